"""What a run produced: the result or a structured failure, plus the captured output.

Failure kinds (:class:`~runtime.queue.task.OutcomeKind`), and whether a retry could help:

- ``timeout`` (retried): the wall-time limit passed. An exhausted fuel limit is also a
  ``timeout``, but not retried: the same input would use the same fuel again.
- ``trap`` (retried): a wasm trap: a panic or abort (unreachable), stack overflow,
  out-of-bounds access, division by zero, ...
- ``exit`` (retried only for code 75): ``proc_exit`` with a non-zero code. 75
  (EX_TEMPFAIL) asks for a retry; any other code fails terminally. ``proc_exit(0)`` is
  success with an empty result.
- ``memory_limit`` (terminal): the module needed more linear memory than allowed.
- ``bad_result`` (terminal): ``execute`` returned a pointer/length outside memory, a
  result over the result limit, or a result (or ``alloc`` a payload buffer) in the
  stack, which is freed when the call returns.
- ``handler`` (retried when the handler says so): the handler reported an error
  through ``wasmq.fail`` (:mod:`runtime.sandbox.host`); the message is its own.
- ``instantiate`` (terminal): the module could not be instantiated (its initial memory
  is over the limit, an unknown import, a missing ``alloc``/``execute``).
- ``internal`` (terminal): a bug in the sandbox itself (logged with a traceback).
- ``cancelled`` (terminal): the task was cancelled while it ran, and the run was
  stopped (:meth:`~runtime.sandbox.runner.Sandbox.run`'s ``interrupt``); the output
  printed so far is kept.

A refused ``memory.grow`` is invisible to the host (the module just gets -1), so
``memory_limit`` is inferred: a trap with memory within an eighth of the limit, or a
runtime that says "out of memory" on stderr (Go). An explicit exit code is reported as
``exit`` unless the runtime said it ran out of memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.output.chunks import STDERR, STDOUT, LogChunk
from runtime.queue.task import OutcomeKind

#: ``proc_exit`` code that asks for a retry (BSD ``EX_TEMPFAIL``).
EXIT_RETRY = 75


@dataclass
class Outcome:
    """The outcome of one run; ``kind`` is ``ok`` or one of the failure kinds above."""

    kind: OutcomeKind
    result: bytes = b""
    message: str = ""
    retryable: bool = False
    exit_code: int | None = None
    logs: list[LogChunk] = field(default_factory=list)
    log_bytes: int = 0
    log_dropped: int = 0
    duration_ms: float = 0.0
    #: For ``trap``: wasmtime's trap code name (``unreachable``, ``stack_overflow``, ...).
    trap_code: str | None = None
    #: For ``trap`` and ``timeout``: the innermost wasm frames, innermost first.
    frames: list[str] = field(default_factory=list)
    #: Which call failed: ``instantiate``, ``_initialize``, ``alloc`` or ``execute``.
    phase: str = ""
    #: The handler's last ``wasmq.progress`` of this run: (value, message).
    progress: tuple[float, str] | None = None
    #: The size of the task's linear memory when it ended (wasm memory never shrinks,
    #: so this is its peak).
    memory_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.kind == OutcomeKind.OK

    @property
    def stderr(self) -> bytes:
        """Everything the task wrote to stderr that was kept."""
        return b"".join(c.data for c in self.logs if c.stream == STDERR)

    @property
    def stdout(self) -> bytes:
        return b"".join(c.data for c in self.logs if c.stream == STDOUT)


def stderr_hint(logs: list[LogChunk], limit: int = 200) -> str:
    """The most telling stderr line (a Go panic's first line, else the last line)."""
    text = b"".join(c.data for c in logs if c.stream == STDERR)[-16384:]
    lines = [line.strip() for line in text.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    for line in lines:
        if line.startswith(("panic:", "fatal error:")):
            return line[:limit]
    return lines[-1][:limit]
