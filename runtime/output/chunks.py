"""A task's captured stdout and stderr as chunks: the one chunk type, and its stored form.

The sandbox captures output as :class:`LogChunk` and the queue stores, streams and shows
the same type, so this module imports neither the wasm runtime nor (but for types) Redis.
Each chunk of output is stored in the list ``task_logs:<id>`` as
``b"<stream> <ts_ms> " + data`` (stream 1 is stdout, 2 is stderr), oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.queue import keys

if TYPE_CHECKING:
    import redis

STDOUT = 1
STDERR = 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}


@dataclass
class LogChunk:
    """One write of a task to stdout (1) or stderr (2), stamped in ms since the epoch."""

    stream: int
    ts_ms: int
    data: bytes


def stream_name(stream: int) -> str:
    return STREAM_NAMES.get(stream, str(stream))


def chunk_json(chunk: LogChunk) -> dict[str, object]:
    """``{"stream": "stdout", "ts_ms": ..., "data": text}``: times as epoch ms, as in
    every ``--json``."""
    return {
        "stream": stream_name(chunk.stream),
        "ts_ms": chunk.ts_ms,
        "data": chunk.data.decode("utf-8", errors="replace"),
    }


def encode_chunk(chunk: LogChunk) -> bytes:
    """The stored form of a chunk: ``b"<stream> <ts_ms> " + data``."""
    return b"%d %d " % (chunk.stream, chunk.ts_ms) + chunk.data


def decode_chunk(raw: bytes) -> LogChunk:
    """Parse a stored chunk; raises ``ValueError`` on a malformed one."""
    stream, sep1, rest = raw.partition(b" ")
    ts, sep2, data = rest.partition(b" ")
    if not sep1 or not sep2:
        raise ValueError(f"malformed log chunk {raw[:40]!r}")
    return LogChunk(stream=int(stream), ts_ms=int(ts), data=data)


def stream_number(stream: str | int | None) -> int | None:
    """``"stdout"``/``"stderr"``/1/2/None -> 1, 2 or None (both)."""
    if stream is None or stream in (STDOUT, STDERR):
        return stream  # type: ignore[return-value]
    for number, name in STREAM_NAMES.items():
        if stream == name:
            return number
    raise ValueError(f"unknown stream {stream!r}: use stdout or stderr")


def read_logs(client: redis.Redis, task_id: str, stream: str | int | None = None) -> list[LogChunk]:
    """The stored chunks of a task, oldest first (optionally one stream only)."""
    wanted = stream_number(stream)
    chunks = [decode_chunk(raw) for raw in client.lrange(keys.logs(task_id), 0, -1)]
    return [c for c in chunks if wanted is None or c.stream == wanted]
