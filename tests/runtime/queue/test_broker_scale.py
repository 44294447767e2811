"""The broker at scale: wake tokens, fair claims, recovery of a dead process's tasks,
retention that bounds Redis, and payloads kept out of Lua.

The worker-level tests use the stand-in registry and sandbox of tests/support/standins.py,
so they are about the loop; the pool-level ones (group SIGTERM, drain timeout) are in
test_pool.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import pytest
import redis

from runtime.errors import RegistryError
from runtime.queue import keys
from runtime.queue.broker import PAYLOAD_APART, Broker, Report
from runtime.queue.task import Task
from runtime.settings import Settings
from runtime.worker.loop import IDLE_WAIT, Worker
from runtime.worker.pool import SharedLedger
from tests.support.standins import enqueue, make_worker

pytestmark = pytest.mark.usefixtures("broker")


def run_workers(workers: list[Worker]) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    return stop, threads


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def completed(client: redis.Redis, ids: list[str]) -> bool:
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "task_stage")
    return all(stage == b"completed" for stage in pipe.execute())


# -- wake tokens ---------------------------------------------------------------------


def test_each_task_wakes_one_idle_worker(
    broker: Broker,
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    workers = [
        make_worker(redis.Redis.from_url(settings.redis_url or ""), settings) for _ in range(4)
    ]
    stop, threads = run_workers(workers)
    try:
        idle = keys.idle("default")
        # Each worker found nothing and sleeps on its tokens (registered idle as it does).
        wait_until(lambda: redis_client.zcard(idle) == len(workers), 10, "idle workers")
        started = time.monotonic()
        ids = []
        for i in range(40):
            enqueue(broker, f"t{i}", {"result": "x"})
            ids.append(f"t{i}")
            time.sleep(0.02)
        wait_until(lambda: completed(redis_client, ids), 20, "40 completions")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    claims = sum(w.stats.claims for w in workers)
    empty = sum(w.stats.empty_claims for w in workers)
    # A broadcast wake-up makes every idle worker claim per task (about 3 empty claims per
    # task here); tokens wake one. Empty claims left: each worker's first look, its
    # one-second safety claims, and the odd race between a token and a busy claim.
    safety = len(workers) * (elapsed / IDLE_WAIT + 2)
    assert empty <= safety + 0.1 * len(ids), (claims, empty, elapsed)
    assert claims - empty <= len(ids)
    assert sum(w.stats.done for w in workers) == 40
    assert redis_client.llen(keys.wake("default")) == 0


def test_tokens_never_outnumber_pending_tasks(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    for i in range(5):
        enqueue(broker, f"t{i}", {})
    assert redis_client.llen(keys.wake("default")) == 5
    claimed = broker.claim(["default"], "w1", 2)
    assert [t.id for t in claimed] == ["t0", "t1"]
    assert claimed.left == 3
    assert redis_client.llen(keys.wake("default")) == 3
    # A producer that pushes ids without tokens (the reference) leaves tokens behind
    # pending; a claim says how much is left, so the worker claims again anyway.
    redis_client.delete(keys.wake("default"))
    claimed = broker.claim(["default"], "w1", 10)
    assert len(claimed) == 3 and claimed.left == 0
    assert broker.release(list(claimed), "w1") == 3  # type: ignore[arg-type]
    assert redis_client.llen(keys.wake("default")) == 3


# -- fair claims ---------------------------------------------------------------------


def test_a_new_worker_claims_one_task_and_batches_grow_with_speed(
    broker: Broker,
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    for i in range(4):
        enqueue(broker, f"slow{i}", {"sleep": 0.3})
    client = redis.Redis.from_url(settings.redis_url or "")
    workers = [make_worker(client, settings) for _ in range(2)]
    stop, threads = run_workers(workers)
    try:
        wait_until(lambda: completed(redis_client, [f"slow{i}" for i in range(4)]), 20, "4 tasks")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    # Unmeasured, each took one; measured slow, they kept taking one: 2 and 2.
    assert sorted(w.stats.done for w in workers) == [2, 2]
    fast = make_worker(client, settings)
    assert fast._batch_size() == 1
    fast._task_seconds = 0.0001
    assert fast._batch_size() == settings.claim_batch


def test_dead_worker_tasks_are_recovered_at_once(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    for i in range(4):
        enqueue(broker, f"t{i}", {}, max_retries=0 if i == 3 else 3)
    claimed = broker.claim(["default"], "dead-worker", 3)
    other = broker.claim(["default"], "live-worker", 1)
    assert [t.id for t in claimed] == ["t0", "t1", "t2"] and [t.id for t in other] == ["t3"]
    # t0 was running, t1 and t2 had not started; the live worker's t3 is not touched.
    counts = broker.recover_worker("dead-worker", ["default"], ["t1", "t2"], "it died")
    assert counts == (2, 1, 0)
    raw = {i: redis_client.hgetall(keys.task(f"t{i}")) for i in range(4)}
    assert raw[0][b"task_stage"] == b"pending" and raw[0][b"attempts"] == b"1"
    assert raw[0][b"error"] == b"it died" and raw[0][b"error_kind"] == b"lost"
    for i in (1, 2):
        assert raw[i][b"task_stage"] == b"pending" and raw[i][b"attempts"] == b"0"
        assert b"worker" not in raw[i]
    assert raw[3][b"task_stage"] == b"in_progress"
    assert redis_client.lrange(keys.processing(), 0, -1) == [b"t3"]
    assert redis_client.zrange(keys.TIMEOUT, 0, -1) == [b"t3"]
    assert redis_client.llen(keys.pending()) == 3 == redis_client.llen(keys.wake("default"))
    # Out of retries, the running task is dead-lettered instead.
    assert broker.recover_worker("live-worker", ["default"], [], "it died") == (0, 0, 1)
    assert redis_client.lrange(keys.dlq(), 0, -1) == [b"t3"]


def test_shared_ledger_round_trip() -> None:
    import multiprocessing

    ledger = SharedLedger(multiprocessing.get_context("spawn"), claim_batch=2)
    assert ledger.read() == ("", [])
    ledger.note("w1", ["a", "b"])
    assert ledger.read() == ("w1", ["a", "b"])
    # More ids than the claim batch allows for: whole ids are kept, never a torn one.
    ledger.note("w1", ["x" * 200, "y" * 200, "z" * 200])
    worker_id, ids = ledger.read()
    assert worker_id == "w1" and ids and all(len(i) == 200 for i in ids)
    ledger.clear()
    assert ledger.read() == ("", [])


# -- retention -----------------------------------------------------------------------


def finish_all(broker: Broker, results: dict[str, bytes] | None = None) -> list[str]:
    claimed = broker.claim(["default", "other"], "w1", 100)
    reports = []
    for task in claimed:
        assert isinstance(task, Task)
        result = (results or {}).get(task.id, b"r-" + task.id.encode())
        reports.append(Report(task, ok=True, result=result, started_ms=1))
    return broker.finish(reports)


def test_default_retention_is_a_day_and_the_payload_goes_with_success(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    enqueue(broker, "plain", {"x": 1})
    enqueue(broker, "kept", {"x": 2}, keep_payload=True, keep_result=3600.0)
    assert finish_all(broker) == ["completed", "completed"]
    day = 86_400_000
    assert day - 60_000 < redis_client.pttl(keys.result("plain")) <= day
    assert day - 60_000 < redis_client.pttl(keys.task("plain")) <= day
    assert redis_client.hget(keys.task("plain"), "payload") is None
    assert redis_client.hget(keys.task("kept"), "payload") == b'{"x": 2}'
    assert 3_540_000 < redis_client.pttl(keys.result("kept")) <= 3_600_000
    assert 3_540_000 < redis_client.pttl(keys.task("kept")) <= 3_600_000
    second = int(time.time())
    counts = redis_client.hgetall(keys.throughput("default"))
    assert sum(int(v) for v in counts.values()) == 2
    assert all(abs(int(k) - second) <= 2 for k in counts)
    assert 0 < redis_client.ttl(keys.throughput("default")) <= keys.THROUGHPUT_WINDOW


def test_queue_retention_and_completed_record_cap(
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    tuned = dataclasses.replace(settings, queue_result_ttl=(("other", 120.0),), completed_max=5)
    broker = Broker(redis_client, tuned)
    enqueue(broker, "q", {}, queue="other")
    for i in range(12):
        enqueue(broker, f"t{i:02d}", {})
    assert finish_all(broker).count("completed") == 13
    assert 60_000 < redis_client.pttl(keys.result("q")) <= 120_000
    kept = [i.decode() for i in redis_client.lrange(keys.finished(), 0, -1)]
    assert kept == [f"t{i:02d}" for i in range(11, 6, -1)]
    for i in range(12):
        alive = i >= 7
        assert redis_client.exists(keys.task(f"t{i:02d}")) == alive
        assert redis_client.exists(keys.result(f"t{i:02d}")) == alive


def test_cancelled_while_running_keeps_no_result(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    enqueue(broker, "c", {})
    claimed = broker.claim(["default"], "w1", 1)
    assert broker.cancel("c") == ("marked", "in_progress")
    task = claimed[0]
    assert isinstance(task, Task)
    assert broker.finish([Report(task, ok=True, result=b"late")]) == ["cancelled"]
    assert redis_client.exists(keys.result("c")) == 0


# -- large payloads ------------------------------------------------------------------


def test_large_payloads_never_pass_through_lua(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    big = b"\x00\xff" * (512 * 1024)  # 1 MiB, not UTF-8
    broker.enqueue(Task(id="big", task_name="job", payload=big))
    assert redis_client.hget(keys.task("big"), "payload") is None
    assert redis_client.hget(keys.task("big"), "payload_ref") == b"1"
    assert redis_client.get(keys.payload("big")) == big
    assert redis_client.pttl(keys.payload("big")) == -1
    # The same id again keeps the first payload; an unknown task stores nothing.
    _, created = broker.enqueue(Task(id="big", task_name="job", payload=b"y" * big_len()))
    assert not created and redis_client.get(keys.payload("big")) == big
    with pytest.raises(RegistryError):
        broker.enqueue(Task(id="nobody", task_name="nobody", payload=b"z" * big_len()))
    assert redis_client.exists(keys.payload("nobody"), keys.task("nobody")) == 0
    # Just over the inline size it comes back with the claim; far over, with a GET.
    broker.enqueue(Task(id="mid", task_name="job", payload=b"m" * big_len()))
    claimed = broker.claim(["default"], "w1", 5)
    by_id = {t.id: t for t in claimed if isinstance(t, Task)}
    assert by_id["big"].payload == big and by_id["mid"].payload == b"m" * big_len()
    assert "payload_ref" not in by_id["big"].extra
    result = bytes(range(256)) * 4096
    statuses = broker.finish([Report(t, ok=True, result=result) for t in by_id.values()])
    assert statuses == ["completed", "completed"]
    assert redis_client.get(keys.result("big")) == result
    assert redis_client.exists(keys.payload("big"), keys.payload("mid")) == 0


def big_len() -> int:
    return PAYLOAD_APART + 1


@pytest.mark.processes
def test_keep_result_and_keep_payload_from_the_cli(cli: Any, redis_client: redis.Redis) -> None:
    redis_client.hset(keys.TASK_REGISTRY, "job", json.dumps({"digest": "cd" * 32, "version": 1}))
    out = cli("enqueue", "job", "-p", "x", "--keep-result", "2h", "--keep-payload", check=True)
    raw = redis_client.hgetall(keys.task(out.stdout.strip()))
    assert raw[b"keep_result"] == b"7200000" and raw[b"keep_payload"] == b"1"
    bad = cli("enqueue", "job", "--keep-result", "soon")
    assert bad.returncode != 0 and "keep-result" in bad.stderr


def test_a_batch_ack_stores_each_tasks_own_outcome(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    for i in range(4):
        enqueue(broker, f"t{i}", {})
    claimed = [t for t in broker.claim(["default"], "w1", 4) if isinstance(t, Task)]
    big = b"B" * (PAYLOAD_APART + 5)
    reports = [
        Report(claimed[0], ok=True, result=b"one", started_ms=11, duration_ms=1.5),
        Report(
            claimed[1],
            ok=True,
            result=big,
            started_ms=12,
            duration_ms=2.5,
            logs=[b"a", b"b"],
            log_bytes=2,
            log_dropped=3,
            log_file="f.log",
        ),
        Report(
            claimed[2],
            ok=True,
            result=b"",
            started_ms=13,
            duration_ms=3.5,
            logs=[b"c"],
            log_bytes=1,
        ),
        Report(claimed[3], ok=True, result=b"four", started_ms=14, duration_ms=4.5),
    ]
    assert broker.finish(reports) == ["completed"] * 4
    for i, (result, logs) in enumerate(
        [(b"one", []), (big, [b"a", b"b"]), (b"", [b"c"]), (b"four", [])]
    ):
        raw = redis_client.hgetall(keys.task(f"t{i}"))
        assert raw[b"started_ms"] == str(11 + i).encode()
        assert raw[b"duration_ms"] == f"{i + 1.5:.3f}".encode()
        assert redis_client.get(keys.result(f"t{i}")) == result
        assert redis_client.lrange(keys.logs(f"t{i}"), 0, -1) == logs
    raw = redis_client.hgetall(keys.task("t1"))
    assert (raw[b"log_bytes"], raw[b"log_dropped"], raw[b"log_file"]) == (b"2", b"3", b"f.log")


def test_throughput_counts_stay_bounded_without_readers(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    now = int(time.time())
    redis_client.hset(
        keys.throughput("default"), mapping={str(now - 1000 - i): 1 for i in range(200)}
    )
    enqueue(broker, "t", {})
    assert finish_all(broker) == ["completed"]
    counts = redis_client.hgetall(keys.throughput("default"))
    assert 1 <= len(counts) <= 2 and all(abs(int(k) - now) <= 2 for k in counts), counts


def test_an_enqueue_wakes_the_worker_idle_for_the_shortest_time(
    broker: Broker,
    redis_client: redis.Redis,
) -> None:
    now = int(time.time() * 1000)
    idle = keys.idle("default")
    redis_client.zadd(idle, {"dead": now - 60_000, "w1": now - 200, "w2": now - 100})
    enqueue(broker, "a", {})
    assert redis_client.lrange(keys.worker_wake("w2"), 0, -1) == [b"1"]
    enqueue(broker, "b", {})
    assert redis_client.lrange(keys.worker_wake("w1"), 0, -1) == [b"1"]
    # A registration older than any wait can last belongs to a dead worker: skipped.
    enqueue(broker, "c", {})
    assert redis_client.exists(keys.worker_wake("dead")) == 0
    assert redis_client.llen(keys.wake("default")) == 1
    assert redis_client.zcard(idle) == 0
    # Claiming, a worker stops being idle and drops the tokens addressed to it.
    redis_client.zadd(idle, {"w2": now})
    broker.claim(["default"], "w2", 1)
    assert redis_client.zcard(idle) == 0 and redis_client.exists(keys.worker_wake("w2")) == 0
