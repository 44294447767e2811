"""wasmq: a Redis-fed task queue whose workers run untrusted handlers as WebAssembly.

The public Python API. Everything here is stable across minor versions; the modules under
``runtime`` and ``compiler`` are the implementation and may move::

    from wasmq import Client

    with Client() as client:
        task = client.enqueue("task_1", {"name": "world"})
        print(client.result(task.id, wait=True, timeout=10))
"""

from __future__ import annotations

from importlib import metadata

from runtime.client import Client, Payload
from runtime.errors import (
    CompileError,
    ConnectionFailed,
    InvalidTask,
    RegistryError,
    ServerError,
    SettingsError,
    TaskFailed,
    TaskNotFinished,
    TaskNotFound,
    ToolchainMissing,
    WasmqError,
)
from runtime.output.chunks import LogChunk
from runtime.queue.flows import Flow, FlowStatus
from runtime.queue.queries import QueueStats, TaskPage, TaskStatus
from runtime.queue.task import Kind, Limits, Stage, Task
from runtime.settings import Settings
from runtime.worker.heartbeats import WorkerInfo


def _version() -> str:
    # The one version number lives in pyproject.toml; an installed package reports it.
    try:
        return metadata.version("wasmq")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "Client",
    "CompileError",
    "ConnectionFailed",
    "Flow",
    "FlowStatus",
    "InvalidTask",
    "Kind",
    "Limits",
    "LogChunk",
    "Payload",
    "QueueStats",
    "RegistryError",
    "ServerError",
    "Settings",
    "SettingsError",
    "Stage",
    "Task",
    "TaskFailed",
    "TaskNotFinished",
    "TaskNotFound",
    "TaskPage",
    "TaskStatus",
    "ToolchainMissing",
    "WasmqError",
    "WorkerInfo",
    "__version__",
]
