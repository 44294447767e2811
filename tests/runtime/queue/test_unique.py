"""Unique tasks: an enqueue with a unique key its live task holds returns that task."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from runtime.client import Client
from runtime.errors import InvalidTask
from runtime.queue import keys
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Task
from runtime.settings import Settings


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Client:
    redis_client.hset(keys.TASK_REGISTRY, "job", '{"digest": "ab", "version": 1}')
    return Client(settings=settings, client=redis_client)


def test_a_live_key_returns_its_task_and_an_ended_one_is_taken_over(
    client: Client, broker: Broker, redis_client: redis.Redis
) -> None:
    first, created = client.submit(client.task("job", b"a", unique_key="report:7"))
    assert created and first.unique_key == "report:7"
    lock = keys.unique("report:7")
    assert redis_client.get(lock) == first.id.encode()
    assert 3_590_000 < redis_client.pttl(lock) <= 3_600_000  # the default: one hour
    assert redis_client.hget(keys.task(first.id), "unique_key") == b"report:7"
    # Another payload, another id: still the first task while it waits or runs.
    again, created = client.submit(client.task("job", b"b", unique_key="report:7"))
    assert not created and again.id == first.id and again.payload == b"a"
    [claimed] = broker.claim(["default"], "w1", 1)
    assert isinstance(claimed, Task)
    assert client.enqueue("job", b"c", unique_key="report:7").id == first.id
    assert redis_client.llen(keys.pending()) == 0
    # Once it has ended, the key goes to the next task.
    broker.finish([Report(claimed, ok=True, result=b"done")])
    second, created = client.submit(client.task("job", b"d", unique_key="report:7"))
    assert created and second.id != first.id
    assert redis_client.get(lock) == second.id.encode()
    # A cancelled holder gives it up too.
    client.cancel(second.id)
    assert client.enqueue("job", b"e", unique_key="report:7").id not in (first.id, second.id)


def test_the_key_lasts_unique_for_and_a_derived_key_covers_name_queue_and_payload(
    client: Client, redis_client: redis.Redis
) -> None:
    held = client.enqueue("job", b"x", unique_key="short", unique_for="150ms")
    assert 0 < redis_client.pttl(keys.unique("short")) <= 150
    time.sleep(0.2)
    assert client.enqueue("job", b"x", unique_key="short").id != held.id
    one = client.enqueue("job", b"same", unique=True)
    assert client.enqueue("job", b"same", unique=True).id == one.id
    assert client.enqueue("job", b"other", unique=True).id != one.id
    assert client.enqueue("job", b"same", unique=True, queue="q2").id != one.id
    assert one.unique_key.startswith("job:default:")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_key": "k", "unique": True}, "not both"),
        ({"unique_for": "1h"}, "needs a unique key"),
        ({"unique_key": ""}, "invalid unique key"),
        ({"unique_key": "k", "unique_for": "soon"}, "invalid unique-for"),
        ({"unique_key": "k", "unique_for": "0s"}, "unique-for duration: it must be at least 1ms"),
        ({"keep_result": "0s"}, "keep-result duration: it must be at least 1ms"),
    ],
)
def test_bad_unique_options_are_refused(client: Client, options: Any, message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        client.task("job", b"", **options)


@pytest.mark.processes
def test_the_cli_reports_the_task_holding_the_key(
    cli: Any, client: Client, redis_client: redis.Redis
) -> None:
    first = cli("enqueue", "job", "--unique-key", "k1", "--unique-for", "1h", check=True)
    task_id = first.stdout.strip()
    again = cli("enqueue", "job", "-p", "other", "--unique-key", "k1", check=True)
    assert again.stdout.strip() == task_id
    assert again.stderr.strip() == f"task {task_id} holds unique key k1 (pending); nothing enqueued"
    assert redis_client.llen(keys.pending()) == 1
