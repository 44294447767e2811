"""What a local run shows: for people (result on stdout, the rest on stderr) or as JSON.

For people, stdout carries the result alone, so ``wasmq run h.c > out.json`` keeps it;
the task's output lines (tagged with their stream), the outcome, the last progress, and
the time and memory taken go to stderr. A result that is not UTF-8 is shown as a short
hex dump (``--output FILE`` writes its raw bytes). As JSON, one object holds it all.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from runtime.develop.local_run import LocalRun
from runtime.output.chunks import LogChunk, stream_name
from runtime.units import format_size, human_duration

#: Bytes of a non-UTF-8 result shown as hex.
HEX_BYTES = 1024
_HEX_ROW = 16


def log_lines(chunks: Iterable[LogChunk]) -> Iterator[str]:
    """``stdout | text`` per line; a line split over several writes is joined first."""
    partial: dict[int, bytes] = {}
    for chunk in chunks:
        data = partial.pop(chunk.stream, b"") + chunk.data
        *lines, rest = data.split(b"\n")
        for line in lines:
            yield _tagged(chunk.stream, line)
        if rest:
            partial[chunk.stream] = rest
    for stream, rest in partial.items():
        yield _tagged(stream, rest)


def _tagged(stream: int, line: bytes) -> str:
    return f"{stream_name(stream)} | {line.decode('utf-8', errors='replace')}"


def hex_dump(data: bytes, limit: int = HEX_BYTES) -> Iterator[str]:
    """``offset  hex bytes  |printable|`` rows of the first ``limit`` bytes."""
    for offset in range(0, min(len(data), limit), _HEX_ROW):
        row = data[offset : offset + _HEX_ROW]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        yield f"{offset:08x}  {row.hex(' '):<{_HEX_ROW * 3 - 1}}  |{text}|"


def summary_lines(run: LocalRun) -> Iterator[str]:
    """The outcome, the last progress, and time and memory, one line each."""
    outcome = run.outcome
    if outcome.ok:
        yield "outcome: ok"
    else:
        retry = "retryable" if outcome.retryable else "terminal"
        yield f"outcome: {outcome.kind} ({retry}): {outcome.message}"
    if outcome.progress is not None:
        value, message = outcome.progress
        yield f"progress: {value:g}" + (f" {message}" if message else "")
    memory = format_size(outcome.memory_bytes) if outcome.memory_bytes else "-"
    yield (
        f"time: {human_duration(outcome.duration_ms / 1000)}"
        f" (limit {human_duration(run.limits.timeout)}), "
        f"memory: {memory} (limit {format_size(run.limits.memory)}), "
        f"result: {format_size(len(outcome.result))}"
    )


def result_text(result: bytes) -> tuple[str | None, list[str]]:
    """The result as text when it is UTF-8 (None otherwise) and the lines that stand in
    for it when it is not: a note and a hex dump of its start."""
    try:
        return result.decode("utf-8"), []
    except UnicodeDecodeError:
        shown = min(len(result), HEX_BYTES)
        note = (
            f"the result is {len(result)} bytes, not UTF-8; the first {shown} in hex"
            " (--output FILE writes them all)"
        )
        return None, [note, *hex_dump(result)]


#: What ``wasmq run --json`` says about what ran; the keys that do not apply are null.
ABOUT_KEYS = ("source", "task", "version", "digest", "compiled")


def run_json(run: LocalRun, **about: Any) -> dict[str, Any]:
    """The JSON object of ``wasmq run --json``; ``about`` adds what was run (of
    :data:`ABOUT_KEYS`)."""
    outcome = run.outcome
    try:
        result, encoding = outcome.result.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        result, encoding = base64.b64encode(outcome.result).decode(), "base64"
    progress = None
    if outcome.progress is not None:
        progress = {"value": outcome.progress[0], "message": outcome.progress[1]}
    return {
        **dict.fromkeys(ABOUT_KEYS),
        **about,
        "ok": outcome.ok,
        "kind": str(outcome.kind),
        "message": outcome.message or None,
        "retryable": outcome.retryable,
        "exit_code": outcome.exit_code,
        "result": result,
        "encoding": encoding,
        "result_bytes": len(outcome.result),
        "logs": [
            {
                "stream": stream_name(c.stream),
                "ts_ms": c.ts_ms,
                "text": c.data.decode("utf-8", errors="replace"),
            }
            for c in outcome.logs
        ],
        "log_dropped_bytes": outcome.log_dropped,
        "progress": progress,
        "duration_ms": outcome.duration_ms,
        "wall_ms": run.wall_ms,
        "memory_bytes": outcome.memory_bytes,
        "limits": {
            "timeout_ms": run.limits.timeout * 1000,
            "memory_bytes": run.limits.memory,
            "result_bytes": run.limits.result,
            "log_bytes": run.limits.logs,
            "fuel": run.limits.fuel,
        },
    }
