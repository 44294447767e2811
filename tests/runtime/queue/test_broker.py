"""Broker scripts against the real server: enqueue, claim, ack, nack, leases, cancel, DLQ."""

from __future__ import annotations

import json
import threading

import pytest
import redis

from runtime.clock import now_ms
from runtime.errors import InvalidTask, RegistryError, TaskNotFound
from runtime.queue import keys
from runtime.queue.broker import BadTask, Broker, Report
from runtime.queue.task import Kind, Stage, Task, ms_to_score, score_to_ms
from runtime.settings import Settings

DIGEST = "ab" * 32


def register(client: redis.Redis, name: str = "echo", digest: str = DIGEST) -> None:
    client.hset(
        keys.TASK_REGISTRY, name, json.dumps({"name": name, "digest": digest, "version": 2})
    )


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    register(redis_client)
    return Broker(redis_client, settings)


def new_task(task_id: str, **kw: object) -> Task:
    return Task(id=task_id, task_name=str(kw.pop("task_name", "echo")), **kw)  # type: ignore[arg-type]


def claim_tasks(broker: Broker, n: int = 8, queues: list[str] | None = None) -> list[Task]:
    out = broker.claim(queues or ["default"], "w1", n)
    assert all(isinstance(t, Task) for t in out)
    return [t for t in out if isinstance(t, Task)]


def test_enqueue_writes_reference_layout(broker: Broker, redis_client: redis.Redis) -> None:
    task, created = broker.enqueue(new_task("t1", payload=b'{"a":1}'))
    assert created and task.digest == DIGEST and task.version == "2"
    raw = redis_client.hgetall("task_metadata:t1")
    assert raw[b"task_stage"] == b"pending"
    assert raw[b"payload"] == b'{"a":1}'
    assert raw[b"task_kind"] == b"0"
    assert raw[b"timeout"] == b"30s"
    assert raw[b"digest"] == DIGEST.encode()
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"t1"]
    assert b"default" in redis_client.smembers(keys.QUEUES)


def test_enqueue_is_idempotent_by_id(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("same", payload=b"1"))
    again, created = broker.enqueue(new_task("same", payload=b"2"))
    assert not created
    assert again.payload == b"1"
    assert redis_client.llen("task_queue:pending") == 1


def test_enqueue_refuses_unknown_task_and_big_payload(broker: Broker, settings: Settings) -> None:
    with pytest.raises(RegistryError, match="unknown task 'nope'"):
        broker.enqueue(new_task("x", task_name="nope"))
    with pytest.raises(InvalidTask, match="over the limit"):
        broker.enqueue(new_task("y", payload=b"x" * (settings.payload_limit + 1)))


def test_enqueue_many_pipelines(broker: Broker, redis_client: redis.Redis) -> None:
    tasks = [new_task(f"m{i}") for i in range(1200)]
    results = broker.enqueue_many(tasks)
    assert all(created for _, created in results)
    assert redis_client.llen("task_queue:pending") == 1200
    assert not any(created for _, created in broker.enqueue_many(tasks[:10]))


def test_claim_is_fifo_batched_and_leased(broker: Broker, redis_client: redis.Redis) -> None:
    for i in range(5):
        broker.enqueue(new_task(f"c{i}", timeout=20.0))
    before = now_ms()
    got = claim_tasks(broker, 3)
    assert [t.id for t in got] == ["c0", "c1", "c2"]
    for t in got:
        assert t.stage == Stage.IN_PROGRESS and t.attempts == 1 and t.worker == "w1"
        score = redis_client.zscore(keys.TIMEOUT, t.id)
        assert score is not None
        deadline = score_to_ms(score)
        lease = broker.settings.lease_grace * 1000 + 20000
        # Lease scores are whole seconds, rounded up.
        assert before + lease <= deadline <= now_ms() + lease + 1000
    assert redis_client.llen("task_queue:processing") == 3
    assert [t.id for t in claim_tasks(broker, 10)] == ["c3", "c4"]
    assert claim_tasks(broker) == []


def test_claim_respects_queue_order(broker: Broker) -> None:
    broker.enqueue(new_task("low", queue="low"))
    broker.enqueue(new_task("high", queue="high"))
    got = claim_tasks(broker, 1, ["high", "low"])
    assert [t.id for t in got] == ["high"]
    assert got[0].queue == "high"


def test_ack_stores_result_logs_and_bounds(
    redis_client: redis.Redis, settings: Settings, tmp_path: object
) -> None:
    import dataclasses

    register(redis_client)
    broker = Broker(redis_client, dataclasses.replace(settings, finished_max=3, result_ttl=60))
    for i in range(5):
        broker.enqueue(new_task(f"a{i}"))
    tasks = claim_tasks(broker, 5)
    reports = [
        Report(
            t,
            ok=True,
            result=b"r" + t.id.encode(),
            duration_ms=1.5,
            logs=[b"1 5 hi"],
            log_bytes=2,
            started_ms=now_ms(),
        )
        for t in tasks
    ]
    assert broker.finish(reports) == ["completed"] * 5
    assert redis_client.get("task_result:a0") == b"ra0"
    assert 0 < redis_client.pttl("task_result:a0") <= 60000
    assert 0 < redis_client.pttl("task_metadata:a0") <= 60000
    assert redis_client.lrange("task_logs:a0", 0, -1) == [b"1 5 hi"]
    assert redis_client.lrange("task_queue:finished", 0, -1) == [b"a4", b"a3", b"a2"]
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0
    raw = redis_client.hgetall("task_metadata:a0")
    assert raw[b"task_stage"] == b"completed"
    assert raw[b"duration_ms"] == b"1.500"
    assert b"finished_ms" in raw and b"started_ms" in raw
    # A second ack of the same task is a harmless duplicate.
    assert broker.finish(reports[:1]) == ["duplicate"]


def test_ack_publishes_done(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("p1"))
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.done_channel("p1"))
    (task,) = claim_tasks(broker)
    broker.finish([Report(task, ok=True, result=b"x")])
    message = None
    for _ in range(20):
        message = message or pubsub.get_message(timeout=0.1)
    assert message is not None and message["data"] == b"completed"
    pubsub.close()


def test_nack_retries_with_backoff_then_dead_letters(
    broker: Broker, redis_client: redis.Redis
) -> None:
    broker.enqueue(new_task("n1", max_retries=1))
    (task,) = claim_tasks(broker)
    before = now_ms()
    status = broker.nack(
        Report(task, ok=False, error="trap: boom", error_kind="trap", retryable=True)
    )
    assert status == "retrying"
    score = redis_client.zscore(keys.SCHEDULED, "n1")
    assert score is not None
    due = score_to_ms(score)
    backoff = broker.settings.retry_backoff * 1000
    assert due is not None and before + backoff / 2 - 5 <= due <= now_ms() + backoff
    assert redis_client.hget("task_metadata:n1", "task_stage") == b"retrying"
    assert redis_client.hget("task_metadata:n1", "error") == b"trap: boom"
    # Promote by hand (the scheduler's job) and fail again: retries are spent.
    redis_client.zrem(keys.SCHEDULED, "n1")
    redis_client.rpush("task_queue:pending", "n1")
    (task,) = claim_tasks(broker)
    assert task.attempts == 2
    status = broker.nack(
        Report(task, ok=False, error="trap: again", error_kind="trap", retryable=True)
    )
    assert status == "failed"
    assert redis_client.lrange("task_queue:dlq", 0, -1) == [b"n1"]
    raw = redis_client.hgetall("task_metadata:n1")
    assert raw[b"task_stage"] == b"failed" and raw[b"error"] == b"trap: again"


def test_terminal_failure_skips_retries(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("n2", max_retries=5))
    (task,) = claim_tasks(broker)
    assert broker.nack(Report(task, ok=False, error="exit 1", retryable=False)) == "failed"
    assert redis_client.lrange("task_queue:dlq", 0, -1) == [b"n2"]


def test_backoff_grows_and_is_capped() -> None:
    task = new_task("b")
    delays = []
    for attempt in range(1, 12):
        task.attempts = attempt
        delays.append(task.next_retry_delay(1.0, 30.0))
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert all(d <= 30.0 for d in delays)


def test_dlq_list_redrive_purge(broker: Broker, redis_client: redis.Redis) -> None:
    for i in range(3):
        broker.enqueue(new_task(f"d{i}", max_retries=0))
    for task in claim_tasks(broker):
        broker.nack(Report(task, ok=False, error=f"bad {task.id}", retryable=True))
    listed = broker.dlq_list("default")
    assert [t.id for t in listed] == ["d2", "d1", "d0"]
    assert isinstance(listed[0], Task) and listed[0].error == "bad d2"
    assert broker.dlq_redrive("default", ["d1"]) == ["d1"]
    raw = redis_client.hgetall("task_metadata:d1")
    assert raw[b"task_stage"] == b"pending" and raw[b"attempts"] == b"0"
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"d1"]
    assert broker.dlq_purge("default", older_than=3600) == 0
    assert broker.dlq_purge("default", older_than=0) == 2
    assert not redis_client.exists("task_metadata:d0")
    assert broker.dlq_list("default") == []
    # Redrive of everything.
    (task,) = claim_tasks(broker)
    broker.nack(Report(task, ok=False, error="x", retryable=False))
    assert broker.dlq_redrive("default") == ["d1"]


def test_cancel_pending_scheduled_running_and_final(
    broker: Broker, redis_client: redis.Redis
) -> None:
    broker.enqueue(new_task("k1"))
    assert broker.cancel("k1") == ("cancelled", "pending")
    assert redis_client.llen("task_queue:pending") == 0
    broker.enqueue(new_task("k2", kind=Kind.SCHEDULED, scheduled_ms=now_ms() + 60000))
    assert redis_client.zscore(keys.SCHEDULED, "k2") is not None
    assert broker.cancel("k2") == ("cancelled", "scheduled")
    assert redis_client.zscore(keys.SCHEDULED, "k2") is None
    broker.enqueue(new_task("k3"))
    (task,) = claim_tasks(broker)
    assert broker.cancel("k3") == ("marked", "in_progress")
    assert broker.finish([Report(task, ok=True, result=b"x")]) == ["cancelled"]
    assert not redis_client.exists("task_result:k3")
    assert redis_client.hget("task_metadata:k3", "task_stage") == b"cancelled"
    assert redis_client.llen("task_queue:processing") == 0
    assert broker.cancel("k3")[0] == "final"
    with pytest.raises(TaskNotFound):
        broker.cancel("nope")


def test_reaper_requeues_then_dead_letters(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("r1", max_retries=1))
    claim_tasks(broker)
    assert broker.reap(now_ms()) == []
    far = now_ms() + 10**9
    assert broker.reap(far) == [("r1", "requeued")]
    raw = redis_client.hgetall("task_metadata:r1")
    assert raw[b"task_stage"] == b"pending" and b"lease expired" in raw[b"error"]
    assert redis_client.llen("task_queue:processing") == 0
    (task,) = claim_tasks(broker)
    assert task.attempts == 2
    assert broker.reap(far) == [("r1", "failed")]
    assert redis_client.lrange("task_queue:dlq", 0, -1) == [b"r1"]


def test_reaped_task_without_a_queue_wakes_the_default_queue(
    broker: Broker, redis_client: redis.Redis
) -> None:
    # A record written by another producer may carry an empty queue field.
    broker.enqueue(new_task("rq"))
    claim_tasks(broker)
    redis_client.hset("task_metadata:rq", "queue", "")
    redis_client.delete(keys.wake("default"))
    assert broker.reap(now_ms() + 10**9) == [("rq", "requeued")]
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"rq"]
    assert redis_client.llen(keys.wake("default")) == 1
    assert not redis_client.exists(keys.WAKE_PREFIX)


def test_many_reapers_recover_each_task_once(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue_many([new_task(f"mr{i}") for i in range(200)])
    while claim_tasks(broker, 50):
        pass
    far = now_ms() + 10**9
    results: list[tuple[str, str]] = []

    def reap() -> None:
        client = redis.Redis(connection_pool=redis_client.connection_pool)
        results.extend(Broker(client, broker.settings).reap(far, limit=7))
        while batch := Broker(client, broker.settings).reap(far, limit=7):
            results.extend(batch)

    threads = [threading.Thread(target=reap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for i, _ in results) == sorted(f"mr{i}" for i in range(200))
    assert redis_client.llen("task_queue:pending") == 200


def test_late_ack_after_reap_is_accepted_once(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("late"))
    (task,) = claim_tasks(broker)
    broker.reap(now_ms() + 10**9)
    assert broker.finish([Report(task, ok=True, result=b"ok")]) == ["completed"]
    assert redis_client.llen("task_queue:pending") == 0
    assert claim_tasks(broker) == []


def test_release_returns_tasks_uncharged(broker: Broker, redis_client: redis.Redis) -> None:
    # Lease renewal is the heartbeat's (tests/runtime/worker/test_heartbeats.py).
    for i in range(3):
        broker.enqueue(new_task(f"l{i}"))
    tasks = claim_tasks(broker)
    assert broker.release(tasks[1:], "w1") == 2
    assert redis_client.hget("task_metadata:l1", "attempts") == b"0"
    assert [t.id for t in claim_tasks(broker)] == ["l1", "l2"]


def test_damaged_records_are_dead_lettered_or_dropped(
    broker: Broker, redis_client: redis.Redis
) -> None:
    redis_client.lpush("task_queue:pending", "ghost")
    bad_fields = {
        "badtimeout": {"timeout": "abc"},
        "badkind": {"task_kind": "9"},
        "negretries": {"max_retries": "-1"},
        "noname": {"task_name": ""},
        "badattempts": {"attempts": "x"},
    }
    for task_id, fields in bad_fields.items():
        mapping = {"id": task_id, "task_name": "echo", "task_stage": "pending", **fields}
        redis_client.hset(f"task_metadata:{task_id}", mapping=mapping)
        redis_client.lpush("task_queue:pending", task_id)
    redis_client.set("task_metadata:wrongtype", "x")
    redis_client.lpush("task_queue:pending", "wrongtype")
    broker.enqueue(new_task("good"))
    got = broker.claim(["default"], "w1", 20)
    bad = {b.id: b for b in got if isinstance(b, BadTask)}
    good = [t.id for t in got if isinstance(t, Task)]
    assert good == ["good"]
    assert not bad["ghost"].kept and not bad["wrongtype"].kept
    assert "timeout" in bad["badtimeout"].error
    assert "task_kind" in bad["badkind"].error
    assert "max_retries" in bad["negretries"].error
    assert "task_name" in bad["noname"].error
    assert "attempts" in bad["badattempts"].error
    dlq = {x.decode() for x in redis_client.lrange("task_queue:dlq", 0, -1)}
    assert dlq == set(bad_fields)
    assert redis_client.llen("task_queue:processing") == 1
    assert redis_client.zcard(keys.TIMEOUT) == 1
    assert b"timeout" in redis_client.hget("task_metadata:badtimeout", "error")  # type: ignore[operator]


def test_scheduled_enqueue_goes_to_scheduled_set(broker: Broker, redis_client: redis.Redis) -> None:
    due = now_ms() + 5000
    task, created = broker.enqueue(new_task("s1", kind=Kind.SCHEDULED, scheduled_ms=due))
    assert created and task.stage == Stage.SCHEDULED
    assert redis_client.zscore(keys.SCHEDULED, "s1") == ms_to_score(due)
    assert redis_client.llen("task_queue:pending") == 0
    assert redis_client.llen(keys.SCHEDULER_WAKE) == 1


def test_scripts_reload_after_script_flush(broker: Broker, redis_client: redis.Redis) -> None:
    broker.enqueue(new_task("f1"))
    broker.enqueue(new_task("f2"))
    tasks = claim_tasks(broker)
    redis_client.script_flush()
    reports = [Report(tasks[0], ok=True), Report(tasks[1], ok=False, error="e", retryable=True)]
    assert broker.finish(reports) == ["completed", "retrying"]
