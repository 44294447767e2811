"""A task's output written to its log file, or mirrored to the worker's stderr."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from runtime.output.chunks import LogChunk, stream_name
from runtime.queue.names import check_task_id, check_task_name
from runtime.queue.task import format_time
from runtime.settings import Settings


def log_file_path(settings: Settings, task_name: str, task_id: str) -> Path:
    """``TASK_QUEUE_WASM_LOG_DIR/<task-name>/<task-id>.log`` (the reference layout)."""
    return settings.wasm_log_dir / check_task_name(task_name) / f"{check_task_id(task_id)}.log"


def format_lines(chunks: Iterable[LogChunk], dropped: int = 0) -> Iterator[str]:
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
    settings: Settings, task_name: str, task_id: str, chunks: Iterable[LogChunk], dropped: int
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
    task_name: str,
    task_id: str,
    chunks: Iterable[LogChunk],
    out: TextIO | None = None,
    *,
    as_json: bool = False,
) -> None:
    """Echo a task's output to the worker's stderr, each line prefixed ``[<name> <id>]``.

    ``as_json`` (the JSON log format) writes each line as a log object instead (event
    ``task output``), so the worker's stderr stays one JSON object per line."""
    target = out or sys.stderr
    prefix = f"[{task_name} {task_id}]"
    for chunk in chunks:
        text = chunk.data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            if as_json:
                record = {
                    "component": "worker",
                    "task_name": task_name,
                    "task_id": task_id,
                    "stream": stream_name(chunk.stream),
                    "line": line,
                    "event": "task output",
                    "level": "info",
                    "timestamp": format_time(chunk.ts_ms),
                }
                target.write(json.dumps(record) + "\n")
            else:
                target.write(f"{prefix} {stream_name(chunk.stream)}: {line}\n")
    target.flush()
