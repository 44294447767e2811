"""A task's captured stdout and stderr: stored chunks, the live stream, files and mirror.

Each chunk of output is stored in the list ``task_logs:<id>`` as
``b"<stream> <ts_ms> " + data`` (stream 1 is stdout, 2 is stderr), oldest first.

While a task runs, :class:`LiveLogPublisher` also appends its chunks to the Redis
stream ``task_log_stream:<id>`` so ``wasmq logs ID --follow`` sees them as they are
printed. Only tasks still running after :data:`LIVE_DELAY` seconds are streamed: most
tasks finish sooner, and for them the stored list (written with the ack) serves
``--follow`` just as well, so the hot path costs one in-memory queue put per chunk.
Stream entries carry ``n`` (the chunk's index in the task's output, which is also its
index in the stored list), so a follower can switch to the stored list without
repeating or skipping chunks; an entry with ``e`` marks the end of an attempt.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import redis
from redis.client import PubSub

from runtime import keys
from runtime.log import get_logger
from runtime.names import check_task_id, check_task_name
from runtime.settings import Settings
from runtime.task import TERMINAL_STAGES, format_time

STDOUT = 1
STDERR = 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}

#: Tasks that end sooner than this (seconds) are never streamed live.
LIVE_DELAY = 0.05
#: Approximate length cap of a live stream (``XADD ... MAXLEN ~``).
LIVE_MAXLEN = 1000
#: A live stream expires this long (ms) after its last write while the task runs...
LIVE_TTL_MS = 10 * 60 * 1000
#: ...and this long after the attempt ends (late followers read the stored list).
LIVE_TTL_AFTER_END_MS = 60 * 1000
#: Longest a follower blocks on the stream before it looks at the task's stage again.
FOLLOW_BLOCK_MS = 100

log = get_logger("worker")


@dataclass
class LogChunk:
    """One write of a task to stdout (1) or stderr (2), with its time in ms.

    Same fields as the sandbox's chunk; every function here takes either.
    """

    stream: int
    ts_ms: int
    data: bytes


class Chunk(Protocol):
    """Anything with a chunk's fields (this module's or the sandbox's ``LogChunk``)."""

    stream: int
    ts_ms: int
    data: bytes


def stream_name(stream: int) -> str:
    return STREAM_NAMES.get(stream, str(stream))


def chunk_json(chunk: Chunk) -> dict[str, object]:
    """``{"stream": "stdout", "ts_ms": ..., "time": RFC3339, "data": text}``."""
    return {
        "stream": stream_name(chunk.stream),
        "ts_ms": chunk.ts_ms,
        "time": format_time(chunk.ts_ms),
        "data": chunk.data.decode("utf-8", errors="replace"),
    }


def encode_chunk(chunk: Chunk) -> bytes:
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


def _stage(client: redis.Redis, task_id: str) -> str:
    raw = client.hget(keys.task(task_id), "task_stage")
    return raw.decode() if isinstance(raw, bytes) else ""


def follow(
    client: redis.Redis, task_id: str, stream: str | int | None = None
) -> Iterator[LogChunk]:
    """Yield a task's chunks as it prints them, then the stored rest; return when it ends.

    A task that is already over (or ends before it is ever streamed) yields its stored
    chunks. A task whose record disappears ends the iteration too. When an attempt
    ends and the task will be retried, the next attempt's output follows.
    """
    wanted = stream_number(stream)
    stream_key = keys.log_stream(task_id)
    last_id = b"0-0"
    next_index = 0
    while True:
        stage = _stage(client, task_id)
        if not stage or stage in TERMINAL_STAGES:
            break
        reply = client.xread({stream_key: last_id}, count=500, block=FOLLOW_BLOCK_MS)
        entries = reply[0][1] if reply else []
        over = False
        for entry_id, fields in entries:
            last_id = entry_id
            if b"e" in fields:
                _wait_done(client, task_id)
                if _stage(client, task_id) in TERMINAL_STAGES:
                    over = True
                    break
                next_index = 0  # a retry: its chunks are numbered from zero again
                continue
            index = int(fields.get(b"n", next_index))
            if index < next_index:
                continue
            next_index = index + 1
            chunk = LogChunk(int(fields[b"s"]), int(fields[b"t"]), fields[b"d"])
            if wanted is None or chunk.stream == wanted:
                yield chunk
        if over:
            break
    for raw in client.lrange(keys.logs(task_id), next_index, -1):
        chunk = decode_chunk(raw)
        if wanted is None or chunk.stream == wanted:
            yield chunk


def subscribe_done(client: redis.Redis, task_id: str, timeout: float = 5.0) -> PubSub:
    """A pub/sub connection subscribed to ``task_done:<id>``, the subscription confirmed.

    Confirmed means the server has registered it, so a stage read after this call and
    a wait on the connection cannot miss the ack's publish between them.
    """
    pubsub = client.pubsub()
    pubsub.subscribe(keys.done_channel(task_id))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        message = pubsub.get_message(timeout=max(left, 0.0))
        if (message is not None and message["type"] == "subscribe") or left <= 0:
            return pubsub


def wait_message(pubsub: PubSub, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a published message; True if one came."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == "message":
            return True


def _wait_done(client: redis.Redis, task_id: str, timeout: float = 1.0) -> None:
    """After an attempt's end marker, wait (event-driven) for the ack to publish the stage."""
    pubsub = subscribe_done(client, task_id, timeout)
    try:
        if _stage(client, task_id) not in TERMINAL_STAGES:
            wait_message(pubsub, timeout)
    finally:
        pubsub.close()


@dataclass
class _LiveTask:
    started: float
    buffered: list[Chunk]
    next_index: int = 0
    streaming: bool = False


_Event = tuple[str, str, "Chunk | None", float]


class LiveLogPublisher:
    """Streams the output of running tasks to ``task_log_stream:<id>`` from a thread.

    The worker calls :meth:`start_task`, :meth:`publish` for each chunk (from the
    sandbox's ``on_output``) and :meth:`end_task`; each is an in-memory queue put.
    Chunks are held back until the task has run for ``delay`` seconds, then flushed
    and streamed as they come; a task that ends sooner never touches Redis here.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        delay: float = LIVE_DELAY,
        maxlen: int = LIVE_MAXLEN,
    ) -> None:
        self.client = client
        self.delay = delay
        self.maxlen = maxlen
        self._events: queue.SimpleQueue[_Event | None] = queue.SimpleQueue()
        self._tasks: dict[str, _LiveTask] = {}
        self._current = threading.local()
        self._thread = threading.Thread(target=self._run, name="wasmq-live-logs", daemon=True)
        self._thread.start()

    def start_task(self, task_id: str) -> None:
        """A task starts on this thread; :meth:`publish` without an id refers to it."""
        self._current.task_id = task_id
        self._events.put(("start", task_id, None, time.monotonic()))

    def publish(self, chunk: Chunk, task_id: str | None = None) -> None:
        """One chunk of output of ``task_id`` (default: the task started on this thread)."""
        target = task_id or getattr(self._current, "task_id", None)
        if target:
            self._events.put(("chunk", target, chunk, 0.0))

    def end_task(self, task_id: str) -> None:
        if getattr(self._current, "task_id", None) == task_id:
            self._current.task_id = None
        self._events.put(("end", task_id, None, 0.0))

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued and stop the thread."""
        self._events.put(None)
        self._thread.join(timeout)

    def _next_deadline(self) -> float | None:
        waiting = [t.started + self.delay for t in self._tasks.values() if not t.streaming]
        return min(waiting) if waiting else None

    def _run(self) -> None:
        while True:
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = ("tick", "", None, 0.0)
            batch = [event]
            # Drain what else is queued so one round trip carries it all.
            while batch[-1] is not None:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except redis.RedisError as exc:
                log.warning("live log stream write failed", error=str(exc))
            except Exception:
                # Live logs are a convenience: never let a bug here take the worker down.
                log.exception("live log publisher failed")
            if batch[-1] is None:
                return

    def _handle(self, batch: list[_Event | None]) -> None:
        pipe = self.client.pipeline(transaction=False)
        touched: set[str] = set()
        for event in batch:
            if event is not None:
                self._apply(pipe, touched, event)
        now = time.monotonic()
        for task_id, task in self._tasks.items():
            if not task.streaming and now >= task.started + self.delay:
                task.streaming = True
                for chunk in task.buffered:
                    self._xadd(pipe, task_id, task, chunk)
                task.buffered = []
                touched.add(task_id)
        for task_id in touched:
            pipe.pexpire(keys.log_stream(task_id), LIVE_TTL_MS)
        if len(pipe):
            pipe.execute()

    def _apply(self, pipe: redis.client.Pipeline, touched: set[str], event: _Event) -> None:
        kind, task_id, chunk, started = event
        if kind == "start":
            self._tasks[task_id] = _LiveTask(started=started, buffered=[])
        elif kind == "chunk" and chunk is not None:
            task = self._tasks.get(task_id)
            if task is None:
                return
            if task.streaming:
                self._xadd(pipe, task_id, task, chunk)
                touched.add(task_id)
            else:
                task.buffered.append(chunk)
                if len(task.buffered) > self.maxlen:
                    # The stream keeps about maxlen entries anyway; keep the numbering right.
                    task.buffered.pop(0)
                    task.next_index += 1
        elif kind == "end":
            ended = self._tasks.pop(task_id, None)
            if ended is not None and ended.streaming:
                key = keys.log_stream(task_id)
                pipe.xadd(key, {"e": b"1"}, maxlen=self.maxlen, approximate=True)
                pipe.pexpire(key, LIVE_TTL_AFTER_END_MS)
                touched.discard(task_id)

    def _xadd(
        self, pipe: redis.client.Pipeline, task_id: str, task: _LiveTask, chunk: Chunk
    ) -> None:
        fields = {"s": chunk.stream, "t": chunk.ts_ms, "d": chunk.data, "n": task.next_index}
        task.next_index += 1
        pipe.xadd(keys.log_stream(task_id), fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]


def log_file_path(settings: Settings, task_name: str, task_id: str) -> Path:
    """``TASK_QUEUE_WASM_LOG_DIR/<task-name>/<task-id>.log`` (the reference layout)."""
    return settings.wasm_log_dir / check_task_name(task_name) / f"{check_task_id(task_id)}.log"


def format_lines(chunks: Iterable[Chunk], dropped: int = 0) -> Iterator[str]:
    """Readable lines: ``<RFC3339 time> <stream> | <text>``, then a truncation marker."""
    for chunk in chunks:
        text = chunk.data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        stamp = format_time(chunk.ts_ms)
        for line in lines:
            yield f"{stamp} {stream_name(chunk.stream)} | {line}"
    if dropped:
        yield truncation_marker(dropped)


def truncation_marker(dropped: int) -> str:
    return f"[output truncated: {dropped} bytes dropped at the log limit]"


def save_log_file(
    settings: Settings, task_name: str, task_id: str, chunks: Iterable[Chunk], dropped: int
) -> Path:
    """Write a task's output to its log file (replacing an earlier attempt's); return the path."""
    path = log_file_path(settings, task_name, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(line + "\n" for line in format_lines(chunks, dropped))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".log")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def mirror_chunks(
    task_name: str, task_id: str, chunks: Iterable[Chunk], out: TextIO | None = None
) -> None:
    """Echo a task's output to the worker's stderr, each line prefixed ``[<name> <id>]``."""
    target = out or sys.stderr
    prefix = f"[{task_name} {task_id}]"
    for chunk in chunks:
        text = chunk.data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            target.write(f"{prefix} {stream_name(chunk.stream)}: {line}\n")
    target.flush()
