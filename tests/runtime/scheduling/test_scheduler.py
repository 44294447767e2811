"""Promotion of due one-off and retrying tasks, the scheduler loop and its wake-ups."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from runtime.clock import now_ms
from runtime.errors import InvalidTask
from runtime.queue import keys
from runtime.queue.task import Kind, Stage, Task, ms_to_score
from runtime.scheduling.scheduler import Scheduler, check_future, run_id, wake
from runtime.settings import Settings

T = 1_800_000_000_000


def schedule(
    client: redis.Redis, task_id: str, due: int, *, queue: str = "default", stage: str = ""
) -> None:
    """Write a scheduled task the way enqueue (and the reference producer) does."""
    task = Task(
        id=task_id,
        task_name="echo",
        payload=b'{"n": 1}',
        queue=queue,
        kind=Kind.SCHEDULED,
        stage=stage or Stage.SCHEDULED,
        scheduled_ms=due,
        created_ms=due - 60_000,
    )
    client.hset(keys.task(task_id), mapping=task.to_hash())  # type: ignore[arg-type]
    client.zadd(keys.SCHEDULED, {task_id: ms_to_score(due)})


def pending(client: redis.Redis, queue: str = "default") -> list[str]:
    return [raw.decode() for raw in client.lrange(keys.pending(queue), 0, -1)]


def test_one_off_task_is_promoted_at_its_time(
    redis_client: redis.Redis, settings: Settings
) -> None:
    schedule(redis_client, "t1", T)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T - 1) == 0
    assert pending(redis_client) == []
    assert scheduler.run_once(T) == 1
    assert pending(redis_client) == ["t1"]
    assert redis_client.zcard(keys.SCHEDULED) == 0
    stored = Task.from_hash(redis_client.hgetall(keys.task("t1")))
    assert stored.stage == Stage.PENDING
    assert stored.extra["promoted_ms"] == str(T)
    assert scheduler.run_once(T + 10) == 0
    assert pending(redis_client) == ["t1"]


def test_promoted_tasks_run_ahead_of_backlog_earliest_first(
    redis_client: redis.Redis, settings: Settings
) -> None:
    redis_client.lpush(keys.pending(), "old1", "old2")
    schedule(redis_client, "late", T + 5)
    schedule(redis_client, "early", T)
    Scheduler(redis_client, settings).run_once(T + 10)
    # Workers pop from the right: early, then late, then the FIFO backlog.
    assert redis_client.rpop(keys.pending()) == b"early"
    assert redis_client.rpop(keys.pending()) == b"late"
    assert redis_client.rpop(keys.pending()) == b"old1"


def tokens(client: redis.Redis, queue: str = "default") -> int:
    return int(client.llen(keys.wake(queue)))


def test_retrying_task_and_named_queue(redis_client: redis.Redis, settings: Settings) -> None:
    schedule(redis_client, "r1", T, queue="emails", stage=Stage.RETRYING)
    assert Scheduler(redis_client, settings).run_once(T) == 1
    assert pending(redis_client, "emails") == ["r1"]
    assert pending(redis_client) == []
    # One wake token per promoted task, on the queue it went to.
    assert redis_client.lrange(keys.wake("emails"), 0, -1) == [b"1"]
    assert tokens(redis_client) == 0


def test_reference_producer_stage_pending_is_promoted(
    redis_client: redis.Redis, settings: Settings
) -> None:
    schedule(redis_client, "ref", T, stage=Stage.PENDING)
    assert Scheduler(redis_client, settings).run_once(T) == 1
    assert pending(redis_client) == ["ref"]


def test_missing_and_damaged_records_do_not_stop_others(
    redis_client: redis.Redis, settings: Settings
) -> None:
    schedule(redis_client, "good", T)
    redis_client.zadd(keys.SCHEDULED, {"ghost": ms_to_score(T - 3)})
    redis_client.set(keys.task("string"), "not a hash")
    redis_client.zadd(keys.SCHEDULED, {"string": ms_to_score(T - 2)})
    schedule(redis_client, "badqueue", T - 1)
    redis_client.hset(keys.task("badqueue"), "queue", "../../etc")
    schedule(redis_client, "done", T - 1)
    redis_client.hset(keys.task("done"), "task_stage", Stage.COMPLETED)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T) == 2
    assert scheduler.last.dropped == 3
    # The damaged queue name lands on the default queue, where the worker fails it clearly.
    assert sorted(pending(redis_client)) == ["badqueue", "good"]
    assert redis_client.zcard(keys.SCHEDULED) == 0
    assert redis_client.get(keys.task("string")) == b"not a hash"


def test_many_due_tasks_are_promoted_in_batches(
    redis_client: redis.Redis, settings: Settings
) -> None:
    pipe = redis_client.pipeline()
    for i in range(450):
        pipe.hset(keys.task(f"b{i}"), mapping={"id": f"b{i}", "task_name": "echo"})
        pipe.zadd(keys.SCHEDULED, {f"b{i}": ms_to_score(T - i)})
    pipe.execute()
    assert Scheduler(redis_client, settings, batch=100).run_once(T) == 450
    assert redis_client.llen(keys.pending()) == 450


def test_concurrent_schedulers_promote_each_task_once(
    redis_client: redis.Redis, settings: Settings, redis_url: str
) -> None:
    for i in range(300):
        schedule(redis_client, f"c{i}", T + i)
    counts: list[int] = []

    def one() -> None:
        client = redis.Redis.from_url(redis_url)
        scheduler = Scheduler(client, settings, batch=7)
        total = 0
        for now in range(T, T + 320, 3):
            total += scheduler.run_once(now)
        counts.append(total)
        client.close()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 300
    ids = pending(redis_client)
    assert len(ids) == 300 and len(set(ids)) == 300


def test_check_future() -> None:
    assert check_future(T, T) == T
    assert check_future(T + 1, T) == T + 1
    assert check_future(T - 50, T) == T - 50  # "--in 0s", computed a moment ago
    with pytest.raises(InvalidTask, match="is in the past"):
        check_future(T - 101, T)
    with pytest.raises(InvalidTask, match="is in the past"):
        check_future(T - 1, T, grace_ms=0)
    with pytest.raises(InvalidTask, match="--in 30s"):
        check_future(now_ms() - 60_000)


def test_run_id_fits_the_id_rules() -> None:
    from runtime.queue.names import check_task_id

    assert run_id("nightly", T) == f"nightly:{T}"
    long_id = run_id("x" * 200, T)
    assert len(long_id) <= 200 and long_id.endswith(f":{T}")
    check_task_id(long_id)
    assert run_id("x" * 200, T) != run_id("x" * 199 + "y", T)


@pytest.fixture
def loop(settings: Settings, redis_url: str) -> Iterator[Scheduler]:
    client = redis.Redis.from_url(redis_url)
    scheduler = Scheduler(client, settings)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield scheduler
    finally:
        stop.set()
        wake(client)
        thread.join(timeout=5)
        client.close()
        assert not thread.is_alive()


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_loop_promotes_due_task_after_wake(redis_client: redis.Redis, loop: Scheduler) -> None:
    time.sleep(0.1)  # the loop is now sleeping with nothing scheduled
    schedule(redis_client, "soon", now_ms() + 300)
    wake(redis_client)
    assert wait_for(lambda: pending(redis_client) == ["soon"])
    assert redis_client.llen(keys.SCHEDULER_WAKE) == 0


@pytest.mark.slow
def test_idle_loop_does_not_poll_fast(redis_client: redis.Redis, loop: Scheduler) -> None:
    time.sleep(0.2)
    redis_client.config_resetstat()
    time.sleep(2.0)
    stats = redis_client.info("commandstats")
    calls = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_blpop", "cmdstat_evalsha"))
    # Capped at one second per sleep: a handful of round trips in two seconds.
    assert calls <= 8, stats


def write_many(
    client: redis.Redis, ids_and_due: list[tuple[str, int]], *, queue: str = "default"
) -> None:
    """Scheduled tasks written in bulk (one pipeline per thousand)."""
    for start in range(0, len(ids_and_due), 1000):
        pipe = client.pipeline(transaction=False)
        for task_id, due in ids_and_due[start : start + 1000]:
            task = Task(
                id=task_id,
                task_name="echo",
                queue=queue,
                kind=Kind.SCHEDULED,
                stage=Stage.SCHEDULED,
                scheduled_ms=due,
                created_ms=due - 60_000,
            )
            pipe.hset(keys.task(task_id), mapping=task.to_hash())  # type: ignore[arg-type]
            pipe.zadd(keys.SCHEDULED, {task_id: ms_to_score(due)})
        pipe.execute()


def test_one_wake_token_per_promoted_task_trimmed_to_pending(
    redis_client: redis.Redis, settings: Settings
) -> None:
    # Tokens left from before (their tasks were claimed meanwhile) must not pile up.
    redis_client.rpush(keys.wake("jobs"), *["1"] * 10)
    redis_client.lpush(keys.pending(), "old1", "old2")
    write_many(redis_client, [(f"d{i}", T - i) for i in range(3)])
    write_many(redis_client, [(f"j{i}", T - i) for i in range(4)], queue="jobs")
    schedule(redis_client, "later", T + 1)
    assert Scheduler(redis_client, settings).run_once(T) == 7
    assert tokens(redis_client) == 3  # backlog tasks had none; promotion adds one each
    assert tokens(redis_client, "jobs") == 4 == redis_client.llen(keys.pending("jobs"))
    assert set(redis_client.lrange(keys.wake("jobs"), 0, -1)) == {b"1"}
    assert Scheduler(redis_client, settings).run_once(T) == 0
    assert tokens(redis_client) == 3 and tokens(redis_client, "jobs") == 4


def test_large_due_backlog_is_promoted_completely_and_in_order(
    redis_client: redis.Redis, settings: Settings
) -> None:
    due = [(f"big{i}", T - 10_000 + i) for i in range(5000)]
    random.Random(7).shuffle(due)
    write_many(redis_client, due)
    redis_client.lpush(keys.pending(), "backlog")
    redis_client.config_resetstat()
    scheduler = Scheduler(redis_client, settings, batch=700)
    assert scheduler.run_once(T) == 5000
    # Per batch, not per task: eight promotion calls for 5,000 tasks (the last one short).
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] == 8
    assert redis_client.zcard(keys.SCHEDULED) == 0
    # Workers pop from the right: earliest due first across all batches, then the backlog.
    popped = [raw.decode() for raw in reversed(redis_client.lrange(keys.pending(), 0, -1))]
    assert popped == [f"big{i}" for i in range(5000)] + ["backlog"]
    assert tokens(redis_client) == 5000
    stages = {redis_client.hget(keys.task(f"big{i}"), "task_stage") for i in range(0, 5000, 97)}
    assert stages == {b"pending"}


def test_damaged_pending_list_fails_the_batch_before_any_change(
    redis_client: redis.Redis, settings: Settings
) -> None:
    write_many(redis_client, [(f"ok{i}", T - i) for i in range(5)])
    write_many(redis_client, [("stuck", T)], queue="broken")
    redis_client.set(keys.pending("broken"), "not a list")
    with pytest.raises(redis.ResponseError, match="not a list"):
        Scheduler(redis_client, settings).run_once(T)
    # Nothing half done: every task is still scheduled, none pending, no token.
    assert redis_client.zcard(keys.SCHEDULED) == 6
    assert redis_client.hget(keys.task("ok0"), "task_stage") == Stage.SCHEDULED.encode()
    assert pending(redis_client) == [] and tokens(redis_client) == 0
    redis_client.delete(keys.pending("broken"))
    assert Scheduler(redis_client, settings).run_once(T) == 6
    assert tokens(redis_client) == 5 and tokens(redis_client, "broken") == 1
