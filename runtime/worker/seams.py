"""What a worker needs from the registry and from the sandbox, and nothing more.

The real :class:`~runtime.modules.registry.Registry` and
:class:`~runtime.sandbox.runner.Sandbox` satisfy these structurally; tests pass
stand-ins that do too, so the loop is tested without compiling or running wasm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Types only: importing the sandbox loads the wasm runtime, which a worker defers
    # until it builds its default sandbox.
    import wasmtime

    from runtime.modules.registry import TaskRecord
    from runtime.output.chunks import LogChunk
    from runtime.sandbox.limits import Capabilities, TaskLimits
    from runtime.sandbox.outcome import Outcome
    from runtime.worker.cancels import Interrupt


class ModuleSource(Protocol):
    """Where a worker finds a task's current record and loads its compiled module."""

    def get(self, name: str) -> TaskRecord | None:
        """The current record of task ``name``, or None when it is not registered."""
        ...

    def load_module(self, digest: str, fuel: bool = False) -> wasmtime.Module:
        """The compiled module with ``digest`` (for an engine with fuel metering or not)."""
        ...


class TaskRunner(Protocol):
    """Runs one task's module; every failure comes back as an :class:`Outcome`."""

    def run(
        self,
        module: wasmtime.Module,
        digest: str,
        payload: bytes,
        limits: TaskLimits,
        *,
        task_name: str,
        capabilities: Capabilities | None = None,
        on_output: Callable[[LogChunk], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        interrupt: Interrupt | None = None,
    ) -> Outcome:
        """``interrupt`` lets another thread stop the run (a cancelled task)."""
        ...

    def idle(self) -> None:
        """No task is expected for a while (a runner may stop its timers)."""
        ...

    def close(self) -> None: ...
