"""Fixtures of the runtime tests: one sandbox per test module, a broker for the stand-ins,
worker pools in subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.settings import Settings
from tests.support.cli import cli_env
from tests.support.pools import FAST, Pools
from tests.support.standins import DIGEST


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    """A broker whose task ``job`` the stand-in registry can load.

    Modules that need other registrations define a ``broker`` of their own.
    """
    redis_client.hset(keys.TASK_REGISTRY, "job", json.dumps({"digest": DIGEST, "version": 1}))
    return Broker(redis_client, settings)


@pytest.fixture
def pools(redis_url: str, tmp_path: Path) -> Iterator[Pools]:
    """A way to start real ``wasmq worker`` pools; every one is stopped after the test."""
    p = Pools(cli_env(redis_url, tmp_path, **FAST), tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
