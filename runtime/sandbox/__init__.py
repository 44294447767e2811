"""The wasm sandbox: engine, limits, our own WASI, captured output and the runner.

``Sandbox(settings).run(module, digest, payload, limits, task_name=...)`` runs one task
and returns an :class:`Outcome`; see :mod:`runtime.sandbox.runner` for how and
:mod:`runtime.sandbox.outcome` for the failure kinds and the retry convention.
"""

from runtime.output.chunks import LogChunk
from runtime.sandbox.limits import Capabilities, TaskLimits
from runtime.sandbox.outcome import EXIT_RETRY, Outcome
from runtime.sandbox.runner import Sandbox

__all__ = ["EXIT_RETRY", "Capabilities", "LogChunk", "Outcome", "Sandbox", "TaskLimits"]
