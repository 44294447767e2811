"""Task priorities within a queue and weighted queue order, against the real server."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import redis
from typer.testing import CliRunner

from runtime.cli import app
from runtime.client import Client
from runtime.clock import now_ms
from runtime.errors import InvalidTask
from runtime.queue import keys, scripts
from runtime.queue.broker import Broker, Report
from runtime.queue.task import ErrorKind, Stage, Task
from runtime.scheduling.scheduler import Scheduler
from runtime.settings import Settings
from runtime.worker.queue_order import QueueOrder

LATER = 10**13  # far beyond every due time and lease of these tests


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Client:
    redis_client.hset(keys.TASK_REGISTRY, "echo", json.dumps({"name": "echo", "digest": "ab" * 32}))
    return Client(settings=settings, client=redis_client)


def claim(client: Client, n: int = 1, queues: tuple[str, ...] = ("default",)) -> list[Task]:
    out = client.broker.claim(list(queues), "w1", n)
    assert all(isinstance(t, Task) for t in out)
    return [t for t in out if isinstance(t, Task)]


def ids(tasks: list[Task]) -> list[str]:
    return [t.id for t in tasks]


def where(r: redis.Redis, task_id: str, queue: str = "default") -> list[str]:
    """The priority levels whose pending list holds ``task_id``."""
    return [
        level
        for level in keys.PRIORITIES
        if task_id.encode() in r.lrange(keys.pending_at(queue, level), 0, -1)
    ]


def test_levels_have_their_own_lists_and_normal_keeps_the_reference_list(
    redis_client: redis.Redis,
) -> None:
    assert keys.pending_lists("default") == (
        "task_queue:pending:high",
        "task_queue:pending",
        "task_queue:pending:low",
    )
    assert keys.pending_at("jobs", "low") == "task_queue:jobs:pending:low"
    with pytest.raises(ValueError, match="unknown priority"):
        keys.pending_at("jobs", "urgent")
    lua = scripts.prelude() + "return pending_key(ARGV[1], ARGV[2])"
    for queue in ("default", "jobs"):
        for level in keys.PRIORITIES:
            assert redis_client.eval(lua, 0, queue, level).decode() == keys.pending_at(queue, level)
    # An unknown level, as a foreign producer may write, is the default one.
    assert redis_client.eval(lua, 0, "jobs", "urgent").decode() == keys.pending("jobs")


def test_claims_take_higher_levels_first_fifo_within_each(
    client: Client, redis_client: redis.Redis
) -> None:
    order = [("l1", "low"), ("n1", None), ("h1", "high"), ("l2", "low"), ("h2", "high")]
    for task_id, level in order:
        client.enqueue("echo", id=task_id, priority=level)
    raw = redis_client.hgetall(keys.task("h1"))
    assert raw[b"priority"] == b"high"
    assert b"priority" not in redis_client.hgetall(keys.task("n1"))
    assert redis_client.lrange(keys.pending(), 0, -1) == [b"n1"]
    assert redis_client.llen(keys.wake("default")) == 5
    first = claim(client, 3)
    assert ids(first) == ["h1", "h2", "n1"]
    # Wake tokens are trimmed to what is left over every level.
    assert redis_client.llen(keys.wake("default")) == 2
    assert ids(claim(client, 1)) == ["l1"]
    assert ids(claim(client, 5)) == ["l2"]
    assert redis_client.exists(keys.wake("default")) == 0


def test_depths_count_every_level(client: Client, redis_url: str) -> None:
    client.enqueue("echo", id="h", priority="high")
    client.enqueue("echo", id="n")
    client.enqueue("echo", id="l", priority="low", queue="jobs")
    client.enqueue("echo", id="l2", priority="low", queue="jobs")
    stats = {row.queue: row for row in client.stats()}
    assert stats["default"].pending == 2 and stats["jobs"].pending == 2
    assert stats["jobs"].oldest_pending_age_ms is not None
    listed = client.list_tasks(stage="pending")
    assert sorted(s.id for s in listed) == ["h", "l", "l2", "n"]
    assert {s.id: s.extra.get("priority") for s in listed}["h"] == "high"
    page = CliRunner().invoke(
        app, ["--redis-url", redis_url, "list", "--stage", "pending", "--json"]
    )
    assert page.exit_code == 0, page.output
    assert len(json.loads(page.output)) == 4
    status = CliRunner().invoke(app, ["--redis-url", redis_url, "status", "l"])
    assert "priority" in status.output and "low" in status.output


def test_cancel_ack_and_nack_take_a_task_out_of_its_level(
    client: Client, redis_client: redis.Redis
) -> None:
    client.enqueue("echo", id="c", priority="low")
    assert where(redis_client, "c") == ["low"]
    assert client.cancel("c") == "cancelled"
    assert where(redis_client, "c") == []
    # A task whose lease expired went back to pending; its late report takes it out.
    for task_id in ("a", "f"):
        client.enqueue("echo", id=task_id, priority="high")
    done, failed = claim(client, 2)
    client.broker.reap(now=LATER)
    assert where(redis_client, "a") == where(redis_client, "f") == ["high"]
    assert client.broker.finish([Report(task=done, ok=True, result=b"ok")]) == ["completed"]
    report = Report(task=failed, ok=False, error="boom", error_kind=ErrorKind.HANDLER)
    assert client.broker.finish([report]) == ["failed"]
    assert where(redis_client, "a") == where(redis_client, "f") == []


def test_release_reap_recover_retry_and_redrive_keep_the_level(
    client: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    broker: Broker = client.broker
    for task_id in ("r1", "r2"):
        client.enqueue("echo", id=task_id, priority="low", max_retries=5)
    client.enqueue("echo", id="n")
    # A higher level is claimed first, so claim the normal one out of the way.
    assert ids(claim(client)) == ["n"]
    _, second = claim(client, 2)
    assert broker.release([second], "w1") == 1
    assert where(redis_client, "r2") == ["low"]
    second = claim(client)[0]
    # A dead worker's tasks: the unstarted one released, the others lost attempts.
    assert broker.recover_worker("w1", ["default"], [second.id], "stopped") == (1, 2, 0)
    assert [where(redis_client, i) for i in ("r1", "r2", "n")] == [["low"], ["low"], ["normal"]]
    normal = claim(client)
    assert ids(normal) == ["n"]
    assert broker.finish([Report(task=normal[0], ok=True)]) == ["completed"]
    lost = claim(client)[0]
    assert broker.reap(now=LATER) == [(lost.id, "requeued")]
    assert where(redis_client, lost.id) == ["low"]
    # A retry waits in the scheduled set and comes back at its level.
    retried = claim(client)[0]
    report = Report(task=retried, ok=False, error="x", error_kind=ErrorKind.TRAP, retryable=True)
    assert broker.finish([report]) == ["retrying"]
    assert Scheduler(redis_client, settings).run_once(LATER) == 1
    assert where(redis_client, retried.id) == ["low"]
    # Dead-lettered, then redriven: back at its level too.
    again = claim(client)[0]
    assert broker.bury(again.id, "default", "bad") == "failed"
    assert client.dlq_redrive([again.id]) == [again.id]
    assert where(redis_client, again.id) == ["low"]
    assert redis_client.hget(keys.task(again.id), "task_stage") == Stage.PENDING.encode()


def test_scheduled_and_cron_tasks_keep_their_level_until_promoted(
    client: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    client.schedule("echo", id="later", delay="1s", priority="high")
    entry = client.cron("echo", "* * * * * *", id="tick", priority="low")
    assert redis_client.hget(keys.task("tick"), "priority") == b"low"
    assert Scheduler(redis_client, settings).run_once(now_ms() + 5_000) == 2
    assert where(redis_client, "later") == ["high"]
    [run_id] = [i.decode() for i in redis_client.lrange(keys.pending_at("default", "low"), 0, -1)]
    run = client.status(run_id)
    assert run.cron_id == entry.id and run.extra["priority"] == "low"
    assert ids(claim(client, 2)) == ["later", run_id]


def test_a_bad_priority_is_refused_naming_the_levels(
    client: Client, redis_client: redis.Redis, redis_url: str
) -> None:
    with pytest.raises(InvalidTask, match="unknown priority 'urgent': use high, normal, low"):
        client.enqueue("echo", priority="urgent")
    with pytest.raises(InvalidTask, match="unknown priority"):
        client.broker.enqueue(Task(id="t", task_name="echo", priority="HIGH"))
    ran = CliRunner().invoke(
        app,
        ["--redis-url", redis_url, "enqueue", "echo", "--priority", "urgent"],
    )
    assert ran.exit_code != 0 and "high, normal, low" in ran.output
    assert redis_client.llen(keys.pending()) == 0
    ran = CliRunner().invoke(
        app,
        ["--redis-url", redis_url, "enqueue", "echo", "--priority", "high"],
    )
    assert ran.exit_code == 0, ran.output
    assert where(redis_client, ran.output.strip()) == ["high"]


def test_queue_specs_parse_weights_and_strict_order() -> None:
    assert QueueOrder.parse(["a", "b"]) == QueueOrder(("a", "b"))
    assert QueueOrder.parse(["a:3", "b"]) == QueueOrder(("a", "b"), (3, 1))
    assert QueueOrder.parse(["a:1", "b:5", "c:5"], strict=True) == QueueOrder(("b", "c", "a"))
    for bad, message in [
        (["a:0"], "whole number from 1 to 1000"),
        (["a:x"], "whole number"),
        (["a:2", "a:1"], "given twice"),
        (["bad/name:2"], "invalid queue name"),
    ]:
        with pytest.raises(ValueError, match=message):
            QueueOrder.parse(bad)


def test_weighted_order_is_proportional_over_many_claims(client: Client) -> None:
    order = QueueOrder.parse(["a:3", "b:1"])
    rng = random.Random(1234)
    firsts = Counter(order.claim_order(rng)[0] for _ in range(4000))
    assert 0.72 < firsts["a"] / 4000 < 0.78
    three = QueueOrder.parse(["a:5", "b:3", "c:2"])
    firsts = Counter(three.claim_order(rng)[0] for _ in range(4000))
    assert [round(firsts[q] / 4000, 1) for q in "abc"] == [0.5, 0.3, 0.2]
    # Through real claims, with both queues always holding tasks.
    n = 200
    client.enqueue_many([("echo", b"") for _ in range(n)], queue="a")
    client.enqueue_many([("echo", b"") for _ in range(n)], queue="b")
    taken = Counter(claim(client, 1, tuple(order.claim_order(rng)))[0].queue for _ in range(n))
    assert 0.66 < taken["a"] / n < 0.84
    # Strict (no weights): the first queue always, while it holds tasks.
    strict = QueueOrder.parse(["b", "a"])
    assert {claim(client, 1, tuple(strict.claim_order(rng)))[0].queue for _ in range(20)} == {"b"}
