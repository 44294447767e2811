"""The read side of the client: status, result (and waiting), logs, list, stats.

Records are made by the real broker (enqueue, claim, finish), so these tests read
exactly what workers write, without running a sandbox.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from runtime.client import Client
from runtime.clock import now_ms
from runtime.errors import TaskFailed, TaskNotFinished, TaskNotFound
from runtime.output.chunks import LogChunk
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import Kind, Stage, Task
from runtime.settings import Settings
from tests.support.seeding import DIGEST, enqueue, register, run, seed_pending, seed_scheduled
from tests.support.server_cost import server_work


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    register(redis_client, "job", "hello")
    return Broker(redis_client, settings)


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Iterator[Client]:
    with Client(settings=settings) as c:
        yield c


def test_status_of_unknown_task(client: Client) -> None:
    with pytest.raises(TaskNotFound, match="no task nope"):
        client.status("nope")
    with pytest.raises(TaskNotFound):
        client.result("nope")
    with pytest.raises(TaskNotFound):
        client.result("nope", wait=True, timeout=0.2)
    with pytest.raises(TaskNotFound):
        client.logs("nope")
    with pytest.raises(TaskNotFound):
        client.logs("nope", follow=True)


def test_status_of_completed_and_failed_tasks(broker: Broker, client: Client) -> None:
    enqueue(broker, "t-ok")
    run(broker, result=b"42", logs=[LogChunk(1, 5, b"hi\n")], log_dropped=7)
    st = client.status("t-ok")
    assert (st.stage, st.outcome, st.attempts, st.queue, st.kind) == (
        "completed",
        "ok",
        1,
        "default",
        "immediate",
    )
    assert st.worker == "w-test" and st.digest == DIGEST and st.version == "1"
    assert st.enqueued_ms and st.started_ms and st.finished_ms
    assert st.duration_ms == 1.5 and st.log_bytes == 3 and st.log_dropped == 7
    assert st.terminal
    data = st.to_json()
    assert json.loads(json.dumps(data)) == data

    enqueue(broker, "t-bad", max_retries=0)
    run(broker, ok=False, error="exited with code 3", error_kind="exit")
    st = client.status("t-bad")
    assert (st.stage, st.outcome, st.error) == ("failed", "exit", "exited with code 3")


def test_result_of_each_stage(broker: Broker, client: Client) -> None:
    enqueue(broker, "done")
    run(broker, result=b"\x00binary\xff")
    assert client.result("done") == b"\x00binary\xff"
    assert client.result("done", wait=True) == b"\x00binary\xff"

    enqueue(broker, "fails", max_retries=0)
    run(broker, ok=False, error="trap: unreachable", error_kind="trap")
    with pytest.raises(TaskFailed, match="trap: unreachable") as info:
        client.result("fails")
    assert (info.value.stage, info.value.error_kind) == ("failed", "trap")

    enqueue(broker, "waiting")
    with pytest.raises(TaskNotFinished, match="is pending"):
        client.result("waiting")
    started = time.monotonic()
    with pytest.raises(TaskNotFinished, match=r"still pending after 0\.3s"):
        client.result("waiting", wait=True, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5

    broker.cancel("waiting")
    with pytest.raises(TaskFailed, match="cancelled"):
        client.wait_result("waiting", timeout=1)


def test_wait_is_woken_by_the_done_message_not_by_polling(broker: Broker, client: Client) -> None:
    latencies = []
    for i in range(5):
        enqueue(broker, f"w{i}")
        started: list[float] = []

        def finish(i: int = i, started: list[float] = started) -> None:
            started.append(time.monotonic())
            run(broker, result=f"r{i}".encode())

        timer = threading.Timer(0.1, finish)
        timer.start()
        assert client.wait_result(f"w{i}", timeout=10) == f"r{i}".encode()
        timer.join()
        latencies.append(time.monotonic() - started[0])
    # The only other way out of the wait is the 2 s safety re-read of the stage; the
    # millisecond figure itself is measured by `wasmq bench`, not here.
    assert sorted(latencies)[2] < 1.0


def test_logs_in_order_by_stream(broker: Broker, client: Client) -> None:
    chunks = [LogChunk(1, 1, b"a\n"), LogChunk(2, 2, b"b\n"), LogChunk(1, 3, b"c\n")]
    enqueue(broker, "logged")
    run(broker, logs=chunks)
    assert list(client.logs("logged")) == chunks
    assert list(client.logs("logged", stream="stderr")) == [chunks[1]]
    assert list(client.logs("logged", follow=True)) == chunks
    with pytest.raises(ValueError, match="unknown stream"):
        client.logs("logged", stream="stdin")


def test_list_is_newest_first_with_filters(
    broker: Broker, client: Client, redis_client: redis.Redis
) -> None:
    register(redis_client, "other")
    for i in range(6):
        enqueue(broker, f"L{i}", name="job" if i % 2 == 0 else "other", created_ms=1000 + i)
    run(broker, result=b"x")  # L0 completes
    enqueue(broker, "Q1", queue="emails", created_ms=2000)
    enqueue(broker, "S1", kind=Kind.SCHEDULED, scheduled_ms=now_ms() + 60_000, created_ms=3000)
    ids = [s.id for s in client.list_tasks()]
    assert ids == ["S1", "Q1", "L5", "L4", "L3", "L2", "L1", "L0"]
    assert [s.id for s in client.list_tasks(limit=3)] == ["S1", "Q1", "L5"]
    assert [s.id for s in client.list_tasks(queue="emails")] == ["Q1"]
    assert [s.id for s in client.list_tasks(task="other")] == ["L5", "L3", "L1"]
    assert [s.id for s in client.list_tasks(stage=Stage.COMPLETED)] == ["L0"]
    assert [s.id for s in client.list_tasks(stage=Stage.SCHEDULED)] == ["S1"]
    assert client.list_tasks(task="nothing") == []


def test_list_finds_filtered_matches_deep_in_long_lists(broker: Broker, client: Client) -> None:
    for i in range(300):
        enqueue(broker, f"deep{i:03d}", created_ms=10_000 + i)
    for _ in range(3):  # the oldest three complete
        run(broker)
    assert [s.id for s in client.list_tasks(stage="pending", limit=2)] == ["deep299", "deep298"]
    assert [s.id for s in client.list_tasks(stage="completed", limit=5)] == [
        "deep002",
        "deep001",
        "deep000",
    ]


def test_stats_per_queue(broker: Broker, client: Client, redis_client: redis.Redis) -> None:
    enqueue(broker, "a1", created_ms=now_ms() - 5000)
    enqueue(broker, "a2")
    enqueue(broker, "a3")
    run(broker)  # a1 completes
    enqueue(broker, "b1", queue="emails")
    run(broker, queue="emails", ok=False, error="bad", error_kind="exit")  # to the DLQ
    enqueue(broker, "s1", kind=Kind.SCHEDULED, scheduled_ms=now_ms() + 60_000)
    (claimed,) = broker.claim(["default"], "w-test", 1)  # a2 in progress
    # What the ack script counts for a1, written here so the count is known exactly.
    redis_client.delete(keys.throughput("default"))
    redis_client.hset(keys.throughput("default"), str(now_ms() // 1000), 1)
    by_queue = {s.queue: s for s in client.stats()}
    default = by_queue["default"]
    assert (default.pending, default.in_progress, default.finished, default.dlq) == (1, 1, 1, 0)
    assert (default.scheduled, default.retrying, default.cron) == (1, 0, 0)
    assert default.completed_last_minute == 1
    assert default.oldest_pending_age_ms is not None and default.oldest_pending_age_ms < 5000
    assert not default.scheduled_estimated
    emails = by_queue["emails"]
    assert (emails.pending, emails.dlq, emails.completed_last_minute) == (0, 1, 0)
    assert emails.oldest_pending_age_ms is None
    assert json.loads(json.dumps(default.to_json())) == default.to_json()
    assert isinstance(claimed, Task)


def test_stats_sums_the_last_minute_of_the_throughput_hash(
    client: Client, redis_client: redis.Redis
) -> None:
    now_s = now_ms() // 1000
    key = keys.throughput("default")
    counts = {
        now_s + 2: 1,  # a worker whose clock runs ahead
        now_s: 4,
        now_s - 59: 2,
        now_s - 60: 8,  # outside the minute, inside the kept window
        now_s - keys.THROUGHPUT_WINDOW + 1: 16,
        now_s - keys.THROUGHPUT_WINDOW: 32,  # past the window: deleted on read
        now_s - 3600: 64,
    }
    redis_client.hset(key, mapping={str(k): v for k, v in counts.items()})
    redis_client.hset(key, "not-a-second", 128)
    (default,) = client.stats()
    assert default.completed_last_minute == 1 + 4 + 2
    kept = [now_s + 2, now_s, now_s - 59, now_s - 60, now_s - keys.THROUGHPUT_WINDOW + 1]
    assert {int(f) for f in redis_client.hkeys(key)} == set(kept)
    # A queue that went quiet long ago: its hash is emptied, and reads as zero.
    redis_client.delete(key)
    redis_client.hset(key, str(now_s - 7200), 5)
    assert client.stats()[0].completed_last_minute == 0
    assert not redis_client.exists(key)


# -- cost: what the server does for one read, whatever the size of the data ---------------


def test_stats_of_a_small_scheduled_set_is_exact(client: Client, redis_client: redis.Redis) -> None:
    seed_scheduled(redis_client, 40)
    report = client.stats_report(sample=40)
    assert (report.scheduled_total, report.scheduled_sampled) == (40, 40)
    assert not report.scheduled_estimated
    by_queue = {s.queue: s for s in report.queues}
    assert (by_queue["default"].scheduled, by_queue["default"].retrying) == (20, 10)
    assert (by_queue["emails"].cron, by_queue["emails"].scheduled) == (10, 0)
    assert not any(s.scheduled_estimated for s in report.queues)


def test_stats_cost_does_not_grow_with_the_scheduled_set(
    client: Client, redis_client: redis.Redis
) -> None:
    sample = 200
    costs = []
    for size in (2_000, 20_000):
        have = redis_client.zcard(keys.SCHEDULED)
        seed_scheduled(redis_client, size - have, start=have)
        report, calls, sent = server_work(redis_client, lambda: client.stats_report(sample))
        assert (report.scheduled_total, report.scheduled_sampled) == (size, sample)
        by_queue = {s.queue: s for s in report.queues}
        assert all(s.scheduled_estimated for s in report.queues)
        # Scaled from a uniform sample of 200: within 5 standard deviations of the truth.
        for value, share in [
            (by_queue["default"].scheduled, 1 / 2),
            (by_queue["default"].retrying, 1 / 4),
            (by_queue["emails"].cron, 1 / 4),
        ]:
            spread = 5 * size * (share * (1 - share) / sample) ** 0.5
            assert abs(value - size * share) <= spread, (value, size, share)
        # One record read per sampled entry, never a range of the set.
        assert calls["hmget"] <= sample + len(by_queue)
        assert calls["zrandmember"] == 1 and calls["zcard"] == 1
        assert not {"zrange", "zrangebyscore", "zscan", "keys", "scan"} & set(calls)
        costs.append((sorted(calls.items()), sent))
    (calls_small, sent_small), (calls_large, sent_large) = costs
    assert calls_small == calls_large
    # Reading the 20,000 ids alone would send over 300 KB.
    assert sent_large < 100_000 and sent_large < 2 * sent_small + 20_000


def test_list_cost_is_bounded_by_the_page_and_the_scan(
    client: Client, redis_client: redis.Redis
) -> None:
    seed_scheduled(redis_client, 20_000)
    seed_pending(redis_client, 5_000)

    # No filter: the first `limit` ids of each place, read whole; nothing else.
    page, calls, _ = server_work(redis_client, lambda: client.list_page(limit=10))
    assert [s.id for s in page.tasks][:3] == ["p-0004999", "p-0004998", "p-0004997"]
    assert len(page.tasks) == 10 and page.complete
    places = 2 * 4 + 1  # the lists of default and emails, and the scheduled set
    assert calls["hgetall"] <= 10 * places and "hmget" not in calls

    # A filter nothing matches: at most `scan` ids of each place, three fields of each.
    page, calls, sent = server_work(
        redis_client, lambda: client.list_page(task="nothing", limit=10, scan=300)
    )
    assert page.tasks == [] and not page.complete and page.scan == 300
    assert calls["hmget"] <= 2 * 300 and "hgetall" not in calls
    assert sent < 100_000

    # A stage filter reads only where that stage waits: the dead-letter lists are empty.
    page, calls, _ = server_work(redis_client, lambda: client.list_page(stage=Stage.FAILED))
    assert page.tasks == [] and page.complete
    assert "zrange" not in calls and "hmget" not in calls and "hgetall" not in calls

    # A rare match: found within the scan, newest first, and only then complete.
    redis_client.hset(keys.task("p-0004000"), "task_name", "rare")
    redis_client.hset(keys.task("p-0000100"), "task_name", "rare")
    page = client.list_page(task="rare", scan=2_000)
    assert [s.id for s in page.tasks] == ["p-0004000"] and not page.complete
    page = client.list_page(task="rare", scan=30_000)
    assert [s.id for s in page.tasks] == ["p-0004000", "p-0000100"] and page.complete
    assert client.list_tasks(task="rare", limit=1) == page.tasks[:1]


def test_list_scheduled_set_from_its_soonest_due_end(
    client: Client, redis_client: redis.Redis
) -> None:
    seed_scheduled(redis_client, 1_000)
    page = client.list_page(stage=Stage.RETRYING, limit=3, scan=100)
    # Retries are every fourth entry by due time; newest enqueued first among those read.
    assert [s.id for s in page.tasks] == ["sched-0000010", "sched-0000006", "sched-0000002"]
    page = client.list_page(queue="emails", limit=50, scan=100)
    assert len(page.tasks) == 25 and not page.complete
    assert all(s.queue == "emails" and s.kind == "cron" for s in page.tasks)
