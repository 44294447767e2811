"""The worker loop against the real server, with a stand-in registry and sandbox.

The stand-ins (tests/support/standins.py) keep these tests about the loop (claim, batch
ack, damaged records, drain, wake-ups, heartbeats); the real registry and sandbox run in
test_pool.py. The ``broker`` fixture (tests/runtime/conftest.py) registers task ``job``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis

from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.settings import Settings
from runtime.worker.heartbeats import list_workers
from runtime.worker.loop import Worker
from tests.support.standins import DIGEST, enqueue, make_worker


def run_burst(worker: Worker) -> None:
    worker.burst = True
    worker.run(threading.Event())


def test_worker_runs_and_acks_a_batch(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    for i in range(20):
        enqueue(broker, f"t{i}", {"result": f"r{i}", "print": f"hello {i}"})
    worker = make_worker(redis_client, settings)
    run_burst(worker)
    assert worker.stats.done == 20
    for i in range(20):
        assert redis_client.get(f"task_result:t{i}") == f"r{i}".encode()
        raw = redis_client.hgetall(f"task_metadata:t{i}")
        assert raw[b"task_stage"] == b"completed"
        assert raw[b"attempts"] == b"1"
        logs = redis_client.lrange(f"task_logs:t{i}", 0, -1)
        assert len(logs) == 1 and logs[0].endswith(f"hello {i}".encode())
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0
    # FIFO: the stand-in saw the tasks in enqueue order.
    assert [json.loads(p)["result"] for p in worker.sandbox.runs] == [f"r{i}" for i in range(20)]


def test_failures_retry_or_dead_letter(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    enqueue(broker, "retry", {"fail": "trap", "retryable": True}, max_retries=2)
    enqueue(broker, "terminal", {"fail": "exit"}, max_retries=2)
    worker = make_worker(redis_client, settings)
    run_burst(worker)
    assert redis_client.hget("task_metadata:retry", "task_stage") == b"retrying"
    assert redis_client.zscore(keys.SCHEDULED, "retry") is not None
    assert redis_client.hget("task_metadata:retry", "error") == b"it failed: trap"
    assert redis_client.hget("task_metadata:terminal", "task_stage") == b"failed"
    assert redis_client.lrange("task_queue:dlq", 0, -1) == [b"terminal"]
    assert worker.stats.failed == 2


def test_damaged_state_never_stops_the_worker(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    redis_client.lpush("task_queue:pending", "no-record")
    for task_id, fields in {
        "bad-timeout": {"timeout": "abc"},
        "bad-kind": {"task_kind": "9"},
        "neg-retries": {"max_retries": "-1"},
        "no-name": {"task_name": ""},
    }.items():
        redis_client.hset(
            f"task_metadata:{task_id}", mapping={"id": task_id, "task_name": "job", **fields}
        )
        redis_client.lpush("task_queue:pending", task_id)
    redis_client.hset(
        "task_metadata:lost-module",
        mapping={"id": "lost-module", "task_name": "job", "digest": "ef" * 32, "payload": "{}"},
    )
    redis_client.lpush("task_queue:pending", "lost-module")
    redis_client.hset(
        "task_metadata:binary",
        mapping={
            "id": "binary",
            "task_name": "job",
            "payload": b'{"result": "ok", "x": "\xff\xfe"}',
        },
    )
    redis_client.lpush("task_queue:pending", "binary")
    enqueue(broker, "good", {"result": "fine"})
    worker = make_worker(redis_client, settings)
    run_burst(worker)
    assert redis_client.get("task_result:good") == b"fine"
    dlq = {x.decode() for x in redis_client.lrange("task_queue:dlq", 0, -1)}
    assert dlq == {"bad-timeout", "bad-kind", "neg-retries", "no-name", "lost-module"}
    assert b"timeout" in redis_client.hget("task_metadata:bad-timeout", "error")  # type: ignore[operator]
    assert b"task_kind" in redis_client.hget("task_metadata:bad-kind", "error")  # type: ignore[operator]
    assert b"max_retries" in redis_client.hget("task_metadata:neg-retries", "error")  # type: ignore[operator]
    assert b"task_name" in redis_client.hget("task_metadata:no-name", "error")  # type: ignore[operator]
    assert b"digest" in redis_client.hget("task_metadata:lost-module", "error")  # type: ignore[operator]
    # Payloads are bytes: one that is not UTF-8 is run like any other.
    assert redis_client.get("task_result:binary") == b"raw bytes"
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0


def test_reference_producer_task_runs(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    # Exactly what the reference's Go producer writes: 14 fields, then LPUSH, in one MULTI.
    pipe = redis_client.pipeline(transaction=True)
    pipe.hset(
        "task_metadata:ref-1",
        mapping={
            "id": "ref-1",
            "task_name": "job",
            "task_version": "",
            "task_stage": "pending",
            "payload": '{"result": "from go"}',
            "task_kind": "0",
            "created_at": "2026-03-29T12:00:00.123456789+05:30",
            "updated_at": "2026-03-29T12:00:00.123456789+05:30",
            "attempts": "0",
            "max_retries": "3",
            "timeout": "1m30s",
            "scheduled_at": "0001-01-01T00:00:00Z",
            "cron_expr": "",
            "next_run_at": "0001-01-01T00:00:00Z",
        },
    )
    pipe.lpush("task_queue:pending", "ref-1")
    pipe.execute()
    worker = make_worker(redis_client, settings)
    run_burst(worker)
    assert redis_client.hget("task_metadata:ref-1", "task_stage") == b"completed"
    assert redis_client.get("task_result:ref-1") == b"from go"
    assert redis_client.hget("task_metadata:ref-1", "attempts") == b"1"


def test_drain_finishes_running_and_gives_back_the_rest(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    for i in range(6):
        enqueue(broker, f"d{i}", {"result": f"r{i}", "sleep": 0.3})
    worker = make_worker(redis_client, settings)
    stop = threading.Event()
    run = worker.sandbox.run

    def stop_as_it_starts(*args: Any, **kw: Any) -> Any:
        # Stopped from inside the first task, the drain begins while d0 runs however
        # slow the machine; polling for in_progress from here can miss that window.
        stop.set()
        return run(*args, **kw)

    worker.sandbox.run = stop_as_it_starts  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert redis_client.get("task_result:d0") == b"r0"
    stages = [redis_client.hget(f"task_metadata:d{i}", "task_stage") for i in range(6)]
    assert stages[0] == b"completed"
    assert set(stages[1:]) <= {b"completed", b"pending"}
    released = [f"d{i}" for i in range(6) if stages[i] == b"pending"]
    assert released, "a claimed batch was given back"
    assert [x.decode() for x in redis_client.lrange("task_queue:pending", 0, -1)][::-1] == released
    for task_id in released:
        assert redis_client.hget(f"task_metadata:{task_id}", "attempts") == b"0"
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0
    assert redis_client.zcard(keys.WORKERS) == 0


@pytest.mark.slow
def test_idle_worker_wakes_on_enqueue_and_registers(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    worker = make_worker(redis_client, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)  # idle: subscribed and asleep
        rows = list_workers(redis_client, settings.heartbeat_interval)
        assert [w.id for w in rows] == [worker.worker_id] and rows[0].alive
        assert rows[0].queues == ["default"]
        latencies = []
        for i in range(5):
            pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(keys.done_channel(f"w{i}"))
            start = time.monotonic()
            enqueue(broker, f"w{i}", {"result": "x"})
            message = None
            while message is None and time.monotonic() - start < 2:
                message = pubsub.get_message(timeout=0.5)
            latencies.append(time.monotonic() - start)
            pubsub.close()
            time.sleep(0.1)
        # Far below the 1 s safety timeout: the wake-up came through pub/sub.
        assert sorted(latencies)[2] < 0.5, latencies
    finally:
        stop.set()
        thread.join(5)
    assert worker.stats.done == 5


def test_cancel_while_running_discards_result(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    enqueue(broker, "c1", {"result": "x", "sleep": 0.5})
    worker = make_worker(redis_client, settings)
    thread = threading.Thread(target=run_burst, args=(worker,))
    thread.start()
    deadline = time.monotonic() + 5
    while redis_client.hget("task_metadata:c1", "task_stage") != b"in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert broker.cancel("c1")[0] == "marked"
    thread.join(5)
    assert redis_client.hget("task_metadata:c1", "task_stage") == b"cancelled"
    assert not redis_client.exists("task_result:c1")
    assert redis_client.llen("task_queue:processing") == 0


def test_batched_tasks_keep_their_leases(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    import dataclasses

    fast = dataclasses.replace(settings, lease_grace=0.3, claim_batch=4)
    for i in range(4):
        enqueue(broker, f"b{i}", {"result": "x", "sleep": 0.2}, timeout=0.1)
    worker = make_worker(redis_client, fast)
    thread = threading.Thread(target=run_burst, args=(worker,))
    thread.start()
    reaped = []
    while thread.is_alive():
        reaped.extend(Broker(redis_client, fast).reap())
        time.sleep(0.02)
    # Claimed together, the last task waited 0.6 s, past its first lease of 0.4 s: the
    # heartbeat thread renewed it, so the reaper never saw an expired lease.
    assert reaped == []
    for i in range(4):
        assert redis_client.hget(f"task_metadata:b{i}", "task_stage") == b"completed"
        assert redis_client.hget(f"task_metadata:b{i}", "attempts") == b"1"


def test_removed_task_fails_terminally_even_with_the_module_cached(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    # The task records the digest at enqueue and the module loads fine: only the
    # registry's missing record can stop it.
    enqueue(broker, "after", {"result": "must not run"}, max_retries=3)
    assert redis_client.hget("task_metadata:after", "digest") == DIGEST.encode()
    redis_client.hdel(keys.TASK_REGISTRY, "job")  # what `wasmq tasks rm job` leaves
    worker = make_worker(redis_client, settings)
    run_burst(worker)
    raw = redis_client.hgetall("task_metadata:after")
    assert raw[b"task_stage"] == b"failed"
    assert b"task job is no longer registered" in raw[b"error"]
    assert redis_client.get("task_result:after") is None
    assert worker.sandbox.runs == []
