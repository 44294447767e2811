"""State shared by every command of one CLI invocation: settings and the connection."""

from __future__ import annotations

from typing import Any

import redis
import typer

from runtime import logging_config
from runtime.server.connection import connect
from runtime.settings import Settings


class AppState:
    """Loads settings once (flags over env over ``.env``) and connects on first use."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        self._settings: Settings | None = None
        self._redis: redis.Redis | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            merged = {**self.overrides, **{k: v for k, v in more.items() if v is not None}}
            self._settings = Settings.load(merged)
            logging_config.configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect(self.settings())
        return self._redis


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj
