"""Damaged queue state against the real worker, registry and sandbox.

Every damaged task goes to the dead-letter list with an error naming the bad field (or
its id is dropped when there is no record to keep); the worker never stops, and the good
tasks enqueued around the damage all complete. Payloads are bytes: one that is not valid
UTF-8 is handed to the handler unchanged and runs like any other.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import redis

from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import Task
from runtime.settings import Settings
from runtime.worker.loop import Worker
from tests.support.paths import ROOT
from tests.support.pools import SPIN_WAT


@pytest.fixture
def broker(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Broker:
    registry = Registry(settings, redis_client)
    registry.register(ROOT / "tasks" / "echo.wat", name="job")
    source = tmp_path / "spin.wat"
    source.write_text(SPIN_WAT)
    registry.register(source)
    return Broker(redis_client, settings)


def good(broker: Broker, task_id: str, payload: bytes = b"") -> None:
    broker.enqueue(Task(id=task_id, task_name="job", payload=payload or task_id.encode()))


def damaged(client: redis.Redis, task_id: str, **fields: str | bytes) -> None:
    mapping: dict[str, str | bytes] = {"id": task_id, "task_name": "job", "payload": "x"}
    mapping.update(fields)
    client.hset(f"task_metadata:{task_id}", mapping=mapping)  # type: ignore[arg-type]
    client.lpush("task_queue:pending", task_id)


def run_burst(settings: Settings, client: redis.Redis, timeout: float = 30) -> Worker:
    worker = Worker(settings, ["default"], client=client, burst=True)
    thread = threading.Thread(target=worker.run, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the worker did not finish its burst"
    return worker


def error_of(client: redis.Redis, task_id: str) -> str:
    return (client.hget(f"task_metadata:{task_id}", "error") or b"").decode()


def assert_clean(client: redis.Redis) -> None:
    assert client.llen("task_queue:processing") == 0
    assert client.zcard(keys.TIMEOUT) == 0


def test_each_damage_is_dead_lettered_naming_the_field(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    cases: dict[str, tuple[dict[str, str | bytes], str]] = {
        "bad-timeout": ({"timeout": "abc"}, "timeout"),
        "zero-timeout": ({"timeout": "0s"}, "timeout"),
        "bad-kind": ({"task_kind": "9"}, "task_kind"),
        "float-kind": ({"task_kind": "1.5"}, "task_kind"),
        "neg-retries": ({"max_retries": "-1"}, "max_retries"),
        "word-retries": ({"max_retries": "three"}, "max_retries"),
        "no-name": ({"task_name": ""}, "task_name"),
        "binary-name": ({"task_name": b"\xff\xfe"}, "task_name"),
        "bad-created": ({"created_at": "yesterday"}, "created_at"),
        "bad-limits": ({"limits": "[1, 2]"}, "limits"),
        "neg-limit": ({"limits": '{"memory": -1}'}, "limits"),
        "lost-module": ({"digest": "ef" * 32}, "digest"),
        "path-digest": ({"digest": "../../../etc/passwd"}, "digest"),
        "corrupt-module": ({"digest": "ab" * 32}, "digest"),
    }
    # Bytes in Redis that do not hash to their digest are never run.
    redis_client.set(keys.module("ab" * 32), b"\x00asm\x01\x00\x00\x00")
    good(broker, "good-first")
    for task_id, (fields, _) in cases.items():
        damaged(redis_client, task_id, **fields)
        good(broker, f"good-after-{task_id}")
    missing_name: dict[str | bytes, str] = {"id": "no-name-field", "payload": "x"}
    redis_client.hset("task_metadata:no-name-field", mapping=missing_name)
    redis_client.lpush("task_queue:pending", "no-name-field")
    redis_client.lpush("task_queue:pending", "no-record")
    redis_client.set("task_metadata:wrong-type", "a string, not a hash")
    redis_client.lpush("task_queue:pending", "wrong-type")
    good(broker, "good-last")

    started = time.monotonic()
    worker = run_burst(settings, redis_client)
    # The damage costs no waiting: the whole burst takes well under the default timeouts.
    assert time.monotonic() - started < 15
    goods = ["good-first", "good-last", *(f"good-after-{t}" for t in cases)]
    for task_id in goods:
        assert redis_client.get(f"task_result:{task_id}") == task_id.encode(), task_id
        assert redis_client.hget(f"task_metadata:{task_id}", "task_stage") == b"completed"
    assert worker.stats.done == len(goods)
    dlq = {x.decode() for x in redis_client.lrange("task_queue:dlq", 0, -1)}
    assert dlq == {*cases, "no-name-field"}
    for task_id, (_, field) in cases.items():
        assert field in error_of(redis_client, task_id), (task_id, error_of(redis_client, task_id))
        assert redis_client.hget(f"task_metadata:{task_id}", "task_stage") == b"failed"
    assert "task_name" in error_of(redis_client, "no-name-field")
    # Nothing to keep: the ids are dropped, the foreign key is left alone.
    assert redis_client.exists("task_metadata:no-record") == 0
    assert redis_client.get("task_metadata:wrong-type") == b"a string, not a hash"
    assert_clean(redis_client)


def test_binary_payload_runs_unchanged(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    payload = bytes(range(256)) + b"\xff\xfe\xc3\x28"
    damaged(redis_client, "binary", payload=payload)
    good(broker, "after")
    run_burst(settings, redis_client)
    assert redis_client.get("task_result:binary") == payload
    assert redis_client.get("task_result:after") == b"after"
    assert_clean(redis_client)


def test_random_damage_never_stops_the_worker(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    rng = random.Random(1234)
    values: list[str | bytes] = [
        "",
        "0",
        "-1",
        "9",
        "1e400",
        "nan",
        "abc",
        "30s",
        "-5s",
        "1m30s",
        "99999h",
        "\x00",
        b"\xff",
        "0001-01-01T00:00:00Z",
        "{}",
        "[]",
        "null",
        "2" * 40,
    ]
    fields = [
        "task_kind",
        "timeout",
        "attempts",
        "max_retries",
        "created_at",
        "updated_at",
        "scheduled_at",
        "next_run_at",
        "limits",
        "task_stage",
        "queue",
        "digest",
        "enqueued_ms",
        "started_ms",
    ]
    ids = []
    for i in range(40):
        task_id = f"rand-{i}"
        mess = {f: rng.choice(values) for f in rng.sample(fields, rng.randint(1, 4))}
        damaged(redis_client, task_id, **mess)
        good(broker, f"good-{i}")
        ids.append(task_id)
    worker = run_burst(settings, redis_client)
    for i in range(40):
        assert redis_client.get(f"task_result:good-{i}") == f"good-{i}".encode()
    assert worker.stats.done >= 40
    dlq = {x.decode() for x in redis_client.lrange("task_queue:dlq", 0, -1)}
    for task_id in ids:
        stage = redis_client.hget(f"task_metadata:{task_id}", "task_stage")
        # Harmless damage runs; anything else is dead-lettered with its reason.
        assert stage in {b"completed", b"failed"}, (task_id, stage)
        if stage == b"failed":
            assert task_id in dlq and error_of(redis_client, task_id), task_id
    assert_clean(redis_client)


def test_shutdown_never_leaves_a_claimed_id_without_lease(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    for i in range(8):
        broker.enqueue(Task(id=f"s{i}", task_name="spin", payload=b"spin:200"))
    worker = Worker(settings, ["default"], client=redis_client)
    stop, abort = threading.Event(), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, abort), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while redis_client.hget("task_metadata:s0", "task_stage") != b"in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.005)
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    for task_id in redis_client.lrange("task_queue:processing", 0, -1):
        assert redis_client.zscore(keys.TIMEOUT, task_id) is not None, task_id
    stages = {redis_client.hget(f"task_metadata:s{i}", "task_stage") for i in range(8)}
    assert stages <= {b"completed", b"pending"}
    assert redis_client.llen("task_queue:pending") + worker.stats.done == 8
    assert_clean(redis_client)


def test_abort_leaves_every_claimed_id_leased(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    for i in range(8):
        broker.enqueue(Task(id=f"a{i}", task_name="spin", payload=b"spin:150"))
    worker = Worker(settings, ["default"], client=redis_client)
    stop, abort = threading.Event(), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, abort), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while redis_client.hget("task_metadata:a0", "task_stage") != b"in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.005)
    abort.set()
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    # Whatever the abort left in processing still has a lease, so the reaper recovers it.
    for task_id in redis_client.lrange("task_queue:processing", 0, -1):
        assert redis_client.zscore(keys.TIMEOUT, task_id) is not None, task_id


def test_damaged_scheduled_set_never_stops_the_scheduler(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    from runtime.scheduling.scheduler import Scheduler

    now_ms = int(time.time() * 1000)
    entries: dict[str, dict[str | bytes, str | bytes]] = {
        "cron-bad-expr": {"task_kind": "2", "cron_expr": "not a cron"},
        "cron-binary-expr": {"task_kind": "2", "cron_expr": b"\xff\xfe * * * * *"},
        "cron-bad-tz": {"task_kind": "2", "cron_expr": "* * * * * *", "cron_tz": "Mars/Base"},
        "kind-nine": {"task_kind": "9"},
        "good-later": {"task_kind": "1"},
    }
    for task_id, fields in entries.items():
        mapping: dict[str | bytes, str | bytes] = {
            "id": task_id,
            "task_name": "job",
            "payload": task_id,
            **fields,
        }
        redis_client.hset(f"task_metadata:{task_id}", mapping=mapping)  # type: ignore[arg-type]
        redis_client.zadd(keys.SCHEDULED, {task_id: now_ms - 10})
    redis_client.zadd(keys.SCHEDULED, {"no-record": now_ms - 10, "no-record-s": now_ms // 1000})
    redis_client.set("task_metadata:wrong-type", "x")
    redis_client.zadd(keys.SCHEDULED, {"wrong-type": now_ms - 10})
    scheduler = Scheduler(redis_client, settings)
    scheduler.run_once(now_ms)
    scheduler.run_once(now_ms + 1)
    # Broken cron entries are parked with their reason instead of firing forever.
    for task_id in ("cron-bad-expr", "cron-binary-expr", "cron-bad-tz"):
        assert redis_client.zscore(keys.SCHEDULED, task_id) is None, task_id
        assert redis_client.hget(f"task_metadata:{task_id}", "task_stage") == b"paused"
    assert redis_client.zcard(keys.SCHEDULED) == 0
    worker = run_burst(settings, redis_client)
    assert redis_client.get("task_result:good-later") == b"good-later"
    assert "task_kind" in error_of(redis_client, "kind-nine")
    assert worker.stats.done == 1
    assert_clean(redis_client)
