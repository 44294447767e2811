"""Fixtures of the runtime tests: one sandbox per test module, a broker for the stand-ins."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.sandbox import Sandbox
from runtime.settings import Settings
from tests.support.standins import DIGEST


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A sandbox with default settings (no Redis needed), closed after the module."""
    box = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    """A broker whose task ``job`` the stand-in registry can load.

    Modules that need other registrations define a ``broker`` of their own.
    """
    redis_client.hset(keys.TASK_REGISTRY, "job", json.dumps({"digest": DIGEST, "version": 1}))
    return Broker(redis_client, settings)
