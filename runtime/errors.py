"""Exceptions that carry a one-line message meant for the user."""

from __future__ import annotations


class WasmqError(Exception):
    """Base for errors a user can act on; ``str(err)`` is one line naming what and what to do."""


class SettingsError(WasmqError):
    """A setting has an invalid value."""


class ConnectionFailed(WasmqError):
    """The Redis server could not be reached."""


class ServerError(WasmqError):
    """The embedded server could not be started or managed."""


class TaskNotFound(WasmqError):
    """No task with the given id exists."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task {task_id}")
        self.task_id = task_id


class InvalidTask(WasmqError):
    """An enqueue request or a stored task is malformed."""


class RegistryError(WasmqError):
    """A task module could not be registered or found."""


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
