"""Rate and concurrency limits per task name or queue, enforced by claim.lua.

The first tests claim and finish tasks through the broker as a worker does (no
sandbox); the last runs real worker pools on a WAT task and kills one of them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from runtime.cli import app
from runtime.client import Client
from runtime.queue import keys
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Task
from runtime.queue.throttles import InvalidLimit
from runtime.settings import Settings
from tests.support.pools import Pools, client_for, register_spin, running_tasks, wait_for
from tests.support.seeding import enqueue, register


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Client:
    register(redis_client, "job", "other")
    return Client(settings=settings, client=redis_client)


def claim(broker: Broker, count: int = 10, queue: str = keys.DEFAULT_QUEUE) -> list[Task]:
    got = broker.claim([queue], "w-test", count)
    assert all(isinstance(t, Task) for t in got)
    return [t for t in got if isinstance(t, Task)]


def done(broker: Broker, *tasks: Task, ok: bool = True) -> None:
    broker.finish([Report(t, ok=ok, started_ms=t.started_ms, duration_ms=1.0) for t in tasks])


def stage(redis_client: redis.Redis, task_id: str) -> bytes | None:
    value = redis_client.hget(keys.task(task_id), "task_stage")
    return value if isinstance(value, bytes) else None


def test_concurrency_limit_sets_tasks_aside_in_order_and_frees_slots(
    client: Client, broker: Broker, redis_client: redis.Redis
) -> None:
    client.set_limit(task="job", concurrency=2)
    for i in range(6):
        enqueue(broker, f"j{i}")
        enqueue(broker, f"o{i}", name="other")
    got = claim(broker, 20)
    # The unlimited task name is not held back; the limited one stops at two.
    assert sorted(t.id for t in got if t.task_name == "other") == [f"o{i}" for i in range(6)]
    assert [t.id for t in got if t.task_name == "job"] == ["j0", "j1"]
    assert got and claim(broker) == []  # the rest went aside: nothing to spin on
    (row,) = client.limits()
    assert (row.running, row.waiting, row.limit.concurrency) == (2, 4, 2)
    assert stage(redis_client, "j2") == b"pending"
    assert redis_client.hget(keys.task("j2"), "attempts") in (None, b"0")

    client.cancel("j4")  # a waiting task leaves the waiting list with its cancel
    by_id = {t.id: t for t in got}
    done(broker, by_id["j0"])
    done(broker, by_id["j1"], ok=False)  # a failure gives its slot back too
    # Each freed slot released the oldest waiter (j4 left with its cancel).
    assert sorted(t.id for t in claim(broker)) == ["j2", "j3"]
    assert client.limits()[0].waiting == 1
    stats = client.stats_report().limits
    assert [(u.limit.scope, u.running, u.waiting) for u in stats] == [("task:job", 2, 1)]

    assert client.remove_limit(task="job")
    assert [t.id for t in claim(broker)] == ["j5"]  # removing a limit lets its tasks go
    assert stage(redis_client, "j4") == b"cancelled"
    assert redis_client.llen(keys.limit_waiting("task:job")) == 0


def test_rate_limit_holds_in_every_window(client: Client, broker: Broker) -> None:
    client.set_limit(queue="emails", rate="3/500ms")
    ids = [enqueue(broker, f"e{i}", queue="emails").id for i in range(7)]
    started: dict[str, int] = {}
    deadline = time.monotonic() + 15
    while len(started) < len(ids):
        assert time.monotonic() < deadline, f"only {sorted(started)} ran"
        got = claim(broker, queue="emails")
        started.update({t.id: t.started_ms for t in got})
        done(broker, *got)
        time.sleep(0.02)
    starts = sorted(started.values())
    # Any four starts span at least the period: never more than three in a window.
    assert all(b - a >= 500 for a, b in zip(starts, starts[3:], strict=False)), starts
    # Limited tasks start roughly in the order they were queued.
    assert sorted(ids, key=started.__getitem__)[:3] == ["e0", "e1", "e2"]


def test_slot_of_a_claim_never_finished_frees_with_its_lease(
    client: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    broker = Broker(redis_client, dataclasses.replace(settings, lease_grace=0.05))
    client.set_limit(task="job", concurrency=1)
    enqueue(broker, "lost", timeout=0.2)
    enqueue(broker, "next")
    (lost,) = claim(broker)  # its worker dies: no ack, no release
    assert claim(broker) == []
    # A running task's lease is renewed (as the heartbeat does): the slot stays held.
    redis_client.zadd(keys.TIMEOUT, {"lost": int(time.time() * 1000) + 60_000}, xx=True)
    time.sleep(0.3)
    assert claim(broker) == []
    redis_client.zadd(keys.TIMEOUT, {"lost": int(time.time() * 1000) + 200}, xx=True)
    deadline = time.monotonic() + 5
    got: list[Task] = []
    while not got:
        assert time.monotonic() < deadline, "the lapsed slot was never freed"
        time.sleep(0.05)
        got = claim(broker)
    assert [t.id for t in got] == ["next"]
    assert lost.id == "lost"


def test_bad_limits_are_refused_with_one_line(client: Client, redis_client: redis.Redis) -> None:
    bad = [
        {"concurrency": 2},
        {"task": "job", "queue": "q", "concurrency": 2},
        {"task": "job"},
        {"task": "job", "concurrency": 0},
        {"task": "job", "rate": "5/parsec"},
        {"task": "job", "rate": "0/s"},
        {"task": "job", "rate": "many"},
        {"task": "no spaces", "concurrency": 1},
        {"queue": "pending", "concurrency": 1},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidLimit) as err:
            client.set_limit(**kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(err.value) and str(err.value), kwargs
    assert redis_client.exists(keys.LIMITS) == 0

    runner = CliRunner()
    url = ["--redis-url", str(client.settings.redis_url)]
    result = runner.invoke(app, [*url, "limit", "set", "--task", "job", "--rate", "5/fortnight"])
    assert isinstance(result.exception, InvalidLimit)
    assert "N/PERIOD" in str(result.exception)
    ok = runner.invoke(app, [*url, "limit", "set", "--queue", "q", "--concurrency", "3"])
    assert ok.exit_code == 0 and "queue:q: concurrency 3" in ok.output
    listed = runner.invoke(app, [*url, "limit", "list"])
    assert "queue:q" in listed.output and "0/3" in listed.output
    gone = runner.invoke(app, [*url, "limit", "rm", "--queue", "q"])
    assert gone.exit_code == 0 and redis_client.exists(keys.LIMITS) == 0


@pytest.mark.slow
@pytest.mark.processes
def test_concurrency_limit_holds_across_worker_processes_and_a_kill(
    settings: Settings, redis_client: redis.Redis, redis_url: str, tmp_path: Path, pools: Pools
) -> None:
    register_spin(settings, redis_client, tmp_path)
    client = client_for(redis_url, tmp_path, redis_client)
    client.set_limit(task="spin", concurrency=2)
    pools.start("--concurrency", "2")
    pools.start("--concurrency", "2", "--no-scheduler")
    pools.wait_idle(redis_client, 4)
    tasks = [client.enqueue("spin", b"spin:150") for _ in range(8)]

    def all_done() -> bool:
        return all(stage(redis_client, t.id) == b"completed" for t in tasks)

    wait_for(all_done, 60, "the limited tasks to complete", pools.logs)
    spans = []
    for t in tasks:
        raw = redis_client.hmget(keys.task(t.id), "started_ms", "duration_ms")
        start = int(raw[0])  # type: ignore[arg-type]
        spans.append((start, start + float(raw[1])))  # type: ignore[arg-type]
    most = max(sum(1 for a, b in spans if a <= s < b) for s, _ in spans)
    assert most == 2, spans  # four processes, never more than two of the task at once

    # A pool killed outright while its task holds the only slot: the next task waits
    # for that task's lease (2 s timeout + 1 s grace), then runs on the other pool.
    client.set_limit(task="spin", concurrency=1)
    held = client.enqueue("spin", b"spin:30000", timeout="2s", max_retries=0)
    wait_for(lambda: held.id in running_tasks(redis_client), 30, "the task to run", pools.logs)
    worker = redis_client.hget(keys.task(held.id), "worker").decode()  # type: ignore[union-attr]
    os.killpg(os.getpgid(int(worker.rsplit(":", 2)[1])), signal.SIGKILL)
    after = client.enqueue("spin", b"spin:10")
    wait_for(lambda: stage(redis_client, after.id) == b"completed", 30, "the next task", pools.logs)
    started = int(redis_client.hget(keys.task(after.id), "started_ms"))  # type: ignore[arg-type]
    held_started = int(redis_client.hget(keys.task(held.id), "started_ms"))  # type: ignore[arg-type]
    assert started >= held_started + 2000
