"""Per-task state the host functions work on: captured output, argv, deadline, exit code."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.sandbox.outcome import LogChunk

OutputHook = Callable[[LogChunk], None]


class TaskIO:
    """What one run's WASI calls read and write; lives for exactly one task.

    Output is kept in order, tagged with stream and time, up to ``log_limit`` bytes for
    stdout and stderr together; the excess is counted in ``dropped``. Consecutive writes
    to one stream within one millisecond share a chunk, so a flood of tiny writes does
    not become a flood of objects.
    """

    __slots__ = (
        "_chunks",
        "argv0",
        "deadline",
        "dropped",
        "exit_code",
        "host_error",
        "kept",
        "memory",
        "on_output",
        "room",
        "timed_out",
    )

    def __init__(
        self, task_name: str, log_limit: int, deadline: float, on_output: OutputHook | None
    ) -> None:
        self.argv0 = task_name.encode() + b"\0"
        self.room = log_limit
        self.kept = 0
        self.dropped = 0
        self.deadline = deadline  # time.monotonic() value
        self.on_output = on_output
        self.exit_code: int | None = None
        self.timed_out = False
        self.host_error: str | None = None
        #: The instance's memory (a raw ``wasmtime_memory_t``) once instantiated.
        self.memory: Any = None
        self._chunks: list[list[Any]] = []  # [stream, ts_ms, bytearray]

    def write(self, stream: int, data: bytes) -> None:
        size = len(data)
        if size > self.room:
            self.dropped += size - self.room
            data = data[: self.room]
            size = self.room
            if not size:
                return
        self.room -= size
        self.kept += size
        ts = time.time_ns() // 1_000_000
        chunks = self._chunks
        if chunks and chunks[-1][0] == stream and chunks[-1][1] == ts:
            chunks[-1][2] += data
        else:
            chunks.append([stream, ts, bytearray(data)])
        hook = self.on_output
        if hook is not None:
            try:
                hook(LogChunk(stream, ts, bytes(data)))
            except Exception:  # a broken live stream must not fail the task
                self.on_output = None

    def logs(self) -> list[LogChunk]:
        return [LogChunk(s, t, bytes(d)) for s, t, d in self._chunks]


_local = threading.local()


def current() -> TaskIO:
    """The task running on this thread (host functions are called on the caller's thread)."""
    io: TaskIO = _local.io
    return io


def enter(io: TaskIO | None) -> None:
    _local.io = io
