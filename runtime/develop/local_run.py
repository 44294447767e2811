"""One task, run once on this machine: the worker's sandbox and limits, no queue.

Limits come from the same flags as ``wasmq enqueue`` (``--timeout``, ``--memory``) and
are resolved as a worker resolves them: defaults from the settings, each clamped to its
ceiling (:meth:`runtime.sandbox.TaskLimits.resolve`), so a run here ends the way an
attempt on a worker with these settings would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import wasmtime

from runtime.errors import InvalidTask
from runtime.queue.task import Limits
from runtime.sandbox import Capabilities, Outcome, Sandbox, TaskLimits
from runtime.settings import Settings
from runtime.units import parse_duration, parse_size


def resolve_limits(settings: Settings, timeout: str | None, memory: str | None) -> TaskLimits:
    """The limits of a run asked for with ``--timeout`` / ``--memory`` (None: the default).

    Raises :class:`InvalidTask` with the message ``wasmq enqueue`` gives for the value."""
    requested = Limits()
    if timeout is not None:
        try:
            requested.timeout = parse_duration(timeout)
        except ValueError as exc:
            raise InvalidTask(f"invalid timeout: {exc}") from None
        if requested.timeout <= 0:
            raise InvalidTask("invalid timeout: it must be greater than zero")
    if memory is not None:
        try:
            requested.memory = parse_size(memory)
        except ValueError as exc:
            raise InvalidTask(f"invalid memory limit: {exc}") from None
    return TaskLimits.resolve(requested, settings)


@dataclass
class LocalRun:
    """What one local run did, and the time it took from start to outcome."""

    outcome: Outcome
    limits: TaskLimits
    #: Wall time of the whole run in ms: the sandbox's preparation and the task.
    wall_ms: float


def run_once(
    settings: Settings,
    module: wasmtime.Module,
    digest: str,
    payload: bytes,
    limits: TaskLimits,
    *,
    task_name: str,
    capabilities: Capabilities | None = None,
) -> LocalRun:
    """Run ``module`` on ``payload`` in a fresh sandbox; failures are in the outcome."""
    started = time.perf_counter()
    sandbox = Sandbox(settings)
    try:
        outcome = sandbox.run(
            module, digest, payload, limits, task_name=task_name, capabilities=capabilities
        )
    finally:
        sandbox.close()
    return LocalRun(outcome, limits, (time.perf_counter() - started) * 1000.0)
