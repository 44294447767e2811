"""State shared by every command of one CLI invocation: settings and the connection."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import redis
import typer

from runtime import logging_config
from runtime.project import find_project
from runtime.server.connection import connect
from runtime.settings import Settings, read_env_file

#: Commands that run until stopped: they log at info by default. Every other command is
#: one-shot and logs warnings and errors only, unless ``-v`` asks for more.
LONG_RUNNING = frozenset({"worker", "scheduler", "reaper"})
_VERBOSITY = ("warning", "info", "debug")


class AppState:
    """Loads settings once (flags over env over ``.env``) and connects on first use."""

    def __init__(
        self, overrides: dict[str, Any], *, verbose: int = 0, command: str | None = None
    ) -> None:
        self.overrides = overrides
        #: How many ``-v`` were given, and the command run (its first word).
        self.verbose = verbose
        self.command = command
        self._settings: Settings | None = None
        self._redis: redis.Redis | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            merged = {**self.overrides, **{k: v for k, v in more.items() if v is not None}}
            loaded = Settings.load(merged)
            # The level the command runs at travels in the settings, so the worker
            # pool's processes log at it too.
            self._settings = dataclasses.replace(loaded, log_level=self._log_level(loaded))
            logging_config.configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    def _log_level(self, loaded: Settings) -> str:
        """An explicit ``--log-level`` / ``TASK_QUEUE_LOG_LEVEL`` wins; else ``-v`` (info),
        ``-vv`` (debug), else the command's default."""
        if self._level_given(loaded):
            return loaded.log_level
        wanted = _VERBOSITY[min(self.verbose, len(_VERBOSITY) - 1)]
        if self.command in LONG_RUNNING and wanted == "warning":
            return "info"
        return wanted

    def _level_given(self, loaded: Settings) -> bool:
        if self.overrides.get("log_level") is not None or "TASK_QUEUE_LOG_LEVEL" in os.environ:
            return True
        if loaded.log_level != Settings.log_level:
            return True  # only a .env file can have set it
        dotenv = find_project().env_file  # the one Settings.load read
        return dotenv is not None and "TASK_QUEUE_LOG_LEVEL" in read_env_file(dotenv)

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(self.settings(), on_new_server=announce_new_server)
        return self._redis


def announce_new_server(state_dir: Path) -> None:
    """Say, whatever the log level, that a command started an embedded server with no
    data, so one started by mistake (from another directory) is seen at once."""
    typer.echo(
        f"wasmq: started a new embedded server in {state_dir} "
        "(empty: register tasks with wasmq register PATH)",
        err=True,
    )


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj
