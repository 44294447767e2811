"""The heartbeat thread: the worker's record, and the renewal of its tasks' leases."""

from __future__ import annotations

import time

import redis

from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import Task, score_to_ms
from runtime.settings import Settings
from runtime.worker.heartbeats import Heartbeat, WorkerStats, list_workers


def claim(broker: Broker, settings: Settings, *ids: str) -> None:
    for task_id in ids:
        broker.enqueue(Task(id=task_id, task_name="job"))
    claimed = broker.claim([settings.queue], "w1", len(ids))
    assert sorted(t.id for t in claimed if isinstance(t, Task)) == sorted(ids)


def test_renew_moves_only_the_leases_still_held(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    claim(broker, settings, "held", "other")
    other = redis_client.zscore(keys.TIMEOUT, "other")
    beat = Heartbeat(
        redis_client,
        "w1",
        [settings.queue],
        WorkerStats(),
        1.0,
        leases=lambda: {"held": 123_000, "gone": 5_000},
    )
    beat.renew()
    assert score_to_ms(redis_client.zscore(keys.TIMEOUT, "held") or 0) == 123_000
    assert redis_client.zscore(keys.TIMEOUT, "other") == other
    assert redis_client.zscore(keys.TIMEOUT, "gone") is None


def test_the_running_heartbeat_renews_and_reports(
    broker: Broker, settings: Settings, redis_client: redis.Redis
) -> None:
    claim(broker, settings, "long")
    score = redis_client.zscore(keys.TIMEOUT, "long")
    assert score is not None
    first = score_to_ms(score)
    deadlines = iter(range(int(first) + 1000, int(first) + 10**6, 1000))
    beat = Heartbeat(
        redis_client,
        "w1",
        [settings.queue],
        WorkerStats(done=2),
        0.05,
        leases=lambda: {"long": next(deadlines)},
        renew_every=0.01,
    )
    beat.start()
    try:
        limit = time.monotonic() + 5
        while score_to_ms(redis_client.zscore(keys.TIMEOUT, "long") or 0) < first + 3000:
            assert time.monotonic() < limit, "the lease was not renewed repeatedly"
            time.sleep(0.01)
        (worker,) = list_workers(redis_client, 0.05)
        assert (worker.id, worker.done, worker.alive) == ("w1", 2, True)
    finally:
        beat.stop(deregister=True)
    assert list_workers(redis_client, 0.05) == []
