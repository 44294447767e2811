"""Fixtures of the runtime tests: one sandbox per test module, a broker for the stand-ins."""

from __future__ import annotations

import json

import pytest
import redis

from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.settings import Settings
from tests.support.standins import DIGEST


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    """A broker whose task ``job`` the stand-in registry can load.

    Modules that need other registrations define a ``broker`` of their own.
    """
    redis_client.hset(keys.TASK_REGISTRY, "job", json.dumps({"digest": DIGEST, "version": 1}))
    return Broker(redis_client, settings)
