"""Exceptions that carry a one-line message meant for the user."""

from __future__ import annotations

from collections.abc import Sequence


class WasmqError(Exception):
    """Base for errors a user can act on; ``str(err)`` is one line naming what and what to do."""


class SettingsError(WasmqError):
    """A setting has an invalid value."""


class ConnectionFailed(WasmqError):
    """The Redis server could not be reached."""


class NotReplicated(WasmqError):
    """The server took a write, but fewer replicas than ``WASMQ_REPLICA_ACKS`` confirmed it
    in time: a failover now could lose it."""


class ServerError(WasmqError):
    """The embedded server could not be started or managed."""


class NotFound(WasmqError):
    """Something the user named does not exist; the message says what it was."""


class TaskNotFound(NotFound):
    """No task with the given id exists (the message is exactly ``no task <id>``)."""

    what = "task"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no {self.what} {task_id}")
        self.task_id = task_id


class CronEntryNotFound(TaskNotFound):
    """No cron entry with the given id exists (a cron entry is a task record, so callers
    that catch :class:`TaskNotFound` keep working)."""

    what = "cron entry"


class InvalidTask(WasmqError):
    """An enqueue request or a stored task is malformed."""


class RegistryError(WasmqError):
    """A task module could not be registered or found."""


class UnknownTask(RegistryError):
    """A task name that is not registered; suggests the closest registered names."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        hint = "register it with wasmq register PATH"
        if suggestions:
            names = " or ".join(repr(s) for s in suggestions)
            message = f"unknown task {name!r}: did you mean {names}? ({hint})"
        else:
            message = f"unknown task {name!r}: {hint}"
        super().__init__(message)
        self.name = name
        self.suggestions = list(suggestions)


class CompileError(WasmqError):
    """A source file failed to compile; the message carries the compiler's output."""


class ToolchainMissing(CompileError):
    """The toolchain for a source language is not installed."""


class TaskFailed(WasmqError):
    """A task ended failed or cancelled; carries its stage, error kind and error, and
    whether that error was retryable (a handler's error says which it was)."""

    def __init__(
        self,
        task_id: str,
        stage: str,
        error: str = "",
        error_kind: str = "",
        retryable: bool | None = None,
    ) -> None:
        what = error or error_kind or "no error recorded"
        super().__init__(f"task {task_id} {stage}: {what}")
        self.task_id = task_id
        self.stage = stage
        self.error = error
        self.error_kind = error_kind
        self.retryable = retryable


class TaskNotFinished(WasmqError):
    """A task has no result yet (or did not finish within the wait's timeout)."""
