"""Loads the Lua scripts in ``runtime/queue/lua`` so every multi-key change is one atomic call.

Each script's header comment lists the keys it touches. Scripts are registered once
per client and invoked by EVALSHA (redis-py falls back to EVAL after a server restart).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return resources.files("runtime.queue").joinpath("lua").joinpath(f"{name}.lua").read_text()


class Scripts:
    """``scripts.claim(keys=[...], args=[...])`` runs ``runtime/queue/lua/claim.lua`` atomically."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._loaded: dict[str, Script] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        script = self._loaded.get(name)
        if script is None:
            script = self._client.register_script(source(name))
            self._loaded[name] = script
        return script
