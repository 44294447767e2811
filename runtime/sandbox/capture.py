"""Per-task state the host functions work on: captured output, argv, deadline, exit code.

Output is bounded three ways, because a handler controls how it writes:

- bytes: stdout and stderr together keep at most the task's log limit; the rest is
  counted in ``dropped`` and never copied out of the task's memory;
- entries: consecutive writes to one stream within one millisecond share a chunk, empty
  writes make no chunk, and past :data:`COALESCE_AFTER` chunks every write to the same
  stream as the last chunk joins it whatever the time. Past :data:`MAX_CHUNKS` chunks,
  output is dropped and counted in ``dropped``;
- the live stream: at most :data:`MAX_LIVE` pieces per task reach the live log hook.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.clock import now_ms
from runtime.output.chunks import LogChunk

OutputHook = Callable[[LogChunk], None]
#: Hears a handler's progress reports: (value, message); called on the task's thread.
ProgressHook = Callable[[float, str], None]

#: Chunks after which same-stream writes always coalesce (their timestamps blur).
COALESCE_AFTER = 1024
#: Chunks a task may store at most; one chunk is one entry of the task's stored log.
MAX_CHUNKS = 4096
#: Pieces of output handed to the live log stream per task.
MAX_LIVE = 4096


class TaskIO:
    """What one run's WASI calls read and write; lives for exactly one task."""

    __slots__ = (
        "_chunks",
        "argv0",
        "backend",
        "cancelled",
        "deadline",
        "dropped",
        "exit_code",
        "files",
        "handler_error",
        "host_error",
        "kept",
        "live_left",
        "memory",
        "memory_size",
        "on_output",
        "on_progress",
        "progress",
        "room",
        "timed_out",
        "wake",
    )

    def __init__(
        self,
        task_name: str,
        log_limit: int,
        deadline: float,
        on_output: OutputHook | None,
        backend: Any = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.argv0 = task_name.encode() + b"\0"
        self.room = log_limit
        self.kept = 0
        self.dropped = 0
        self.deadline = deadline  # time.monotonic() value
        self.on_output = on_output
        self.live_left = MAX_LIVE
        self.exit_code: int | None = None
        self.timed_out = False
        #: Set by :meth:`cancel` from another thread: the run is to stop now.
        self.cancelled = False
        #: Made by the first sleep only; a cancel sets it.
        self.wake: threading.Event | None = None
        self.host_error: str | None = None
        #: What the handler reported through ``wasmq.fail``: (retryable, message).
        self.handler_error: tuple[bool, str] | None = None
        #: The handler's latest ``wasmq.progress``: (value, message).
        self.progress: tuple[float, str] | None = None
        self.on_progress = on_progress
        #: Whether the operator granted the task files (wasmtime's WASI serves them).
        self.files = False
        #: The backend running the task (:mod:`runtime.sandbox.raw`).
        self.backend = backend
        #: The instance's memory (backend-specific) once instantiated.
        self.memory: Any = None
        #: The memory's size (bytes) when last looked at.
        self.memory_size = 0
        self._chunks: list[list[Any]] = []  # [stream, ts_ms, bytearray]

    def overdue(self) -> bool:
        """Whether the deadline has passed; marks the task timed out if so."""
        if time.monotonic() >= self.deadline:
            self.timed_out = True
        return self.timed_out

    def cancel(self) -> None:
        """Stops the run from another thread: host calls see the deadline passed, a
        sleep wakes, and wasm code stops at its next deadline slice."""
        self.cancelled = True
        self.deadline = 0.0
        wake = self.wake
        if wake is not None:
            wake.set()

    def sleep(self, seconds: float) -> None:
        """Sleeps up to ``seconds``, less if the run is cancelled meanwhile."""
        wake = self.wake
        if wake is None:
            wake = self.wake = threading.Event()
        # cancel() sets the flag before it reads ``wake``: either it sees this event or
        # this sees the flag.
        if not self.cancelled:
            wake.wait(seconds)

    def drop(self, size: int) -> None:
        """Output the task wrote that is not kept (over a limit)."""
        self.dropped += size

    def write(self, stream: int, data: bytes) -> None:
        """Keeps ``data`` (already cut to :attr:`room` by the caller, or cut here)."""
        size = len(data)
        if not size:
            return
        if size > self.room:
            self.drop(size - self.room)
            data = data[: self.room]
            size = len(data)
            if not size:
                return
        ts = now_ms()
        chunks = self._chunks
        last = chunks[-1] if chunks else None
        if (
            last is not None
            and last[0] == stream
            and (last[1] == ts or len(chunks) >= COALESCE_AFTER)
        ):
            last[2] += data
        elif len(chunks) >= MAX_CHUNKS:
            self.drop(size)
            return
        else:
            chunks.append([stream, ts, bytearray(data)])
        self.room -= size
        self.kept += size
        hook = self.on_output
        if hook is not None:
            self.live_left -= 1
            if self.live_left <= 0:
                self.on_output = None
            try:
                hook(LogChunk(stream, ts, bytes(data)))
            except Exception:  # a broken live stream must not fail the task
                self.on_output = None

    def write_from(self, stream: int, address: int, size: int) -> bool:
        """Keeps what fits of ``size`` bytes at ``address``, copying nothing more; False
        once the deadline has passed (wasmtime's WASI calls this once per 4 KiB or so of
        one write, so failing the write is how a long one stops)."""
        if self.overdue():
            return False
        take = min(size, self.room)
        self.drop(size - take)
        if take:
            self.write(stream, ctypes.string_at(address, take))
        return True

    def report_progress(self, value: float, message: str) -> None:
        self.progress = (value, message)
        hook = self.on_progress
        if hook is not None:
            try:
                hook(value, message)
            except Exception:  # like the live log: a broken hook must not fail the task
                self.on_progress = None

    def logs(self) -> list[LogChunk]:
        return [LogChunk(s, t, bytes(d)) for s, t, d in self._chunks]


_local = threading.local()


def current() -> TaskIO:
    """The task running on this thread (host functions are called on the caller's thread)."""
    io: TaskIO = _local.io
    return io


def enter(io: TaskIO | None) -> None:
    _local.io = io
