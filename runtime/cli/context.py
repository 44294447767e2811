"""State shared by every command of one CLI invocation: settings and the connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
import typer

from runtime import logging_config
from runtime.server.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    SERVICE_CONNECT_TIMEOUT,
    connect,
)
from runtime.settings import Settings

#: Commands that run until stopped: they log at info by default. Every other command is
#: one-shot and logs warnings and errors only, unless ``-v`` asks for more.
LONG_RUNNING = frozenset({"worker", "scheduler", "reaper"})
#: Commands that serve until stopped: they wait longer for Redis at start (a service may
#: come up before its Redis), one-shot commands fail sooner.
SERVICES = LONG_RUNNING | {"dashboard"}
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
            # The command's level is a default: an explicit --log-level, environment or
            # .env wins. It travels in the settings, so a worker pool's processes log at it.
            self._settings = Settings.load(
                merged,
                defaults={"log_level": self._log_level(), "connect_timeout": self._patience()},
            )
            logging_config.configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    def _log_level(self) -> str:
        """``-v`` (info), ``-vv`` (debug), else the command's default."""
        wanted = _VERBOSITY[min(self.verbose, len(_VERBOSITY) - 1)]
        if self.command in LONG_RUNNING and wanted == "warning":
            return "info"
        return wanted

    def _patience(self) -> float:
        """Default retry budget of the first connection (``WASMQ_CONNECT_TIMEOUT``)."""
        if self.command in SERVICES:
            return SERVICE_CONNECT_TIMEOUT
        return DEFAULT_CONNECT_TIMEOUT

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
