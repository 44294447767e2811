"""wasmq and the reference Go workers on one Redis, in both directions.

Reference-written tasks are issued with the reference producer's own commands
(``MULTI; HSET task_metadata:<id> <14 fields>; LPUSH task_queue:pending <id>; EXEC``, or
``ZADD task_set:scheduled <Unix seconds>``) and run by a real wasmq worker with the real
registry and sandbox. wasmq-written tasks are read, claimed, acked and promoted by
:mod:`tests.support.reference`, a strict model of the reference's Go side.

Always: times are never "" (Go's zero time instead), ``task_set:scheduled`` and
``task_set:timeout`` are scored in Unix seconds, the reaper leaves a reference worker's
lease alone, and a completed task shows no earlier error. With
``WASMQ_REFERENCE_COMPAT=1`` also: the four reference stages, attempts counting
failures, no expiry on records, six-field cron expressions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.client import Client
from runtime.clock import now_ms
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.reaper import Reaper
from runtime.scheduling.scheduler import Scheduler
from runtime.settings import Settings
from runtime.worker.loop import Worker
from tests.support.paths import ROOT
from tests.support.reference import (
    GO_ZERO_TIME,
    ParseError,
    ReferenceWorker,
    StuckTask,
    check_cron,
    parse_record,
)

#: A handler that always traps (a retryable failure).
TRAP_WAT = """(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) unreachable))
"""


@pytest.fixture
def echo(settings: Settings, redis_client: redis.Redis) -> str:
    """``task_1`` registered from the WAT echo example (returns its payload)."""
    Registry(settings, redis_client).register(ROOT / "tasks" / "echo.wat", name="task_1")
    return "task_1"


@pytest.fixture
def trap(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> str:
    """``boom``, a task that always fails with a retryable trap."""
    path = tmp_path / "boom.wat"
    path.write_text(TRAP_WAT)
    Registry(settings, redis_client).register(path, name="boom")
    return "boom"


def reference_hash(task_id: str, payload: str, kind: int, **fields: str) -> dict[str, str]:
    """The 14 fields of the reference's ``Task.ToMap()``, as its producer writes them."""
    out = {
        "id": task_id,
        "task_name": "task_1",
        "task_version": "0",
        "task_stage": "pending",
        "payload": payload,
        "task_kind": str(kind),
        "created_at": "2026-12-03T12:00:00Z",
        "updated_at": "2026-12-03T12:00:00Z",
        "attempts": "0",
        "max_retries": "5",
        "timeout": "5s",
        "scheduled_at": GO_ZERO_TIME,
        "cron_expr": "",
        "next_run_at": GO_ZERO_TIME,
    }
    out.update(fields)
    return out


def produce(client: redis.Redis, task_id: str, fields: dict[str, str]) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(f"task_metadata:{task_id}", mapping=fields)  # type: ignore[arg-type]
        pipe.lpush("task_queue:pending", task_id)
        pipe.execute()


def schedule(client: redis.Redis, task_id: str, fields: dict[str, str], unix_s: int) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(f"task_metadata:{task_id}", mapping=fields)  # type: ignore[arg-type]
        pipe.zadd("task_set:scheduled", {task_id: float(unix_s)})
        pipe.execute()


def run_burst(settings: Settings, client: redis.Redis) -> Worker:
    worker = Worker(settings, ["default"], client=client, burst=True)
    thread = threading.Thread(target=worker.run, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "worker did not finish its burst"
    return worker


def compat(settings: Settings, on: bool = True) -> Settings:
    """``settings`` in or out of reference compat mode, with retries due at once."""
    return dataclasses.replace(settings, reference_compat=on, retry_backoff=0.001)


def record(client: redis.Redis, task_id: str) -> dict[bytes, bytes]:
    return client.hgetall(f"task_metadata:{task_id}")  # type: ignore[return-value]


@pytest.mark.parametrize(
    "fields",
    [
        {"scheduled_at": "", "next_run_at": ""},
        {"timeout": "1m30s", "created_at": "2026-12-03T12:00:00+05:30"},
        {"timeout": "1.5s", "created_at": "2026-12-03T06:30:00.123456789Z"},
    ],
    ids=["empty-times", "offset", "fraction"],
)
def test_reference_immediate_task_runs(
    echo: str, settings: Settings, redis_client: redis.Redis, fields: dict[str, str]
) -> None:
    produce(redis_client, "ref-1", reference_hash("ref-1", '{"name":"world"}', 0, **fields))
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get("task_result:ref-1") == b'{"name":"world"}'
    raw = record(redis_client, "ref-1")
    assert raw[b"task_stage"] == b"completed"
    assert raw[b"attempts"] == b"1"
    assert redis_client.lrange("task_queue:finished", 0, -1) == [b"ref-1"]
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0


def test_reference_scheduled_task_seconds_score(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    now_s = int(time.time())
    later = reference_hash("later", "later", 1, scheduled_at="2099-01-01T00:00:00+05:30")
    due = reference_hash("due", "due", 1, scheduled_at="2026-12-03T12:00:00+05:30")
    schedule(redis_client, "later", later, now_s + 3600)
    schedule(redis_client, "due", due, now_s - 1)
    # An entry an older wasmq scored in ms is still read right (and rescored in seconds).
    schedule(redis_client, "legacy", reference_hash("legacy", "legacy", 1), 0)
    redis_client.zadd(keys.SCHEDULED, {"legacy": (now_s + 7200) * 1000})
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once() == 1
    # The future ones stay, in seconds, not promoted early.
    assert redis_client.zscore(keys.SCHEDULED, "later") == now_s + 3600
    assert redis_client.zscore(keys.SCHEDULED, "legacy") == now_s + 7200
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"due"]
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get("task_result:due") == b"due"
    assert scheduler.run_once(now_ms=(now_s + 3601) * 1000) == 1
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"later"]


def test_reference_cron_task_promoted(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    now_s = int(time.time())
    fields = reference_hash("cron-1", "repeat", 2, cron_expr="*/10 * * * * *")
    schedule(redis_client, "cron-1", fields, now_s - 1)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once() == 1
    runs = redis_client.lrange("task_queue:pending", 0, -1)
    assert len(runs) == 1 and runs[0].startswith(b"cron-1:")
    # The entry stays, in seconds, at its next ten-second tick.
    score = redis_client.zscore(keys.SCHEDULED, "cron-1")
    assert score is not None and now_s < score < now_s + 11 and score % 10 == 0
    parse_record(record(redis_client, runs[0].decode()))
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get(f"task_result:{runs[0].decode()}") == b"repeat"


def test_the_reference_worker_gets_stuck_on_an_empty_time(redis_client: redis.Redis) -> None:
    """The model reproduces the measured failure wasmq must never cause."""
    produce(redis_client, "bad", reference_hash("bad", "x", 0, scheduled_at=""))
    with pytest.raises(StuckTask, match="parsing time ''"):
        ReferenceWorker(redis_client).claim()
    assert redis_client.lrange("task_queue:processing", 0, -1) == [b"bad"]
    assert redis_client.zcard(keys.TIMEOUT) == 0


@pytest.mark.parametrize("mode", ["default", "compat"])
def test_wasmq_records_under_the_reference(
    echo: str, trap: str, settings: Settings, redis_client: redis.Redis, mode: str
) -> None:
    """Immediate, scheduled, retrying, cron, completed and failed records parse (in
    default mode, but for their finer stage and the unset times it leaves out to save
    memory and server time; compat mode writes them as Go's zero time); the reference
    scheduler promotes the due
    ones (seconds scores), its worker claims them; its ack of a task wasmq failed once
    leaves it completed with no error."""
    s = compat(settings, mode == "compat")
    client = Client(settings=s, client=redis_client)
    client.enqueue(trap, id="dead", max_retries=0)
    client.enqueue(trap, id="boom", max_retries=3)
    client.enqueue(echo, b"done", id="done")
    worker = run_burst(s, redis_client)
    assert (worker.stats.done, worker.stats.failed) == (1, 2)
    client.enqueue(echo, b"now", id="imm")
    due_s = int(time.time()) + 3600
    client.schedule(echo, b"later", at=due_s * 1000, id="sch")
    client.cron(echo, "*/5 * * * *", b"tick", id="cron")
    fine = {"sch": "scheduled", "cron": "scheduled", "boom": "retrying"}
    for task_id in ("imm", "sch", "cron", "boom", "done", "dead"):
        raw = record(redis_client, task_id)
        if mode == "default" and task_id in fine:
            assert raw[b"task_stage"] == fine[task_id].encode()
            raw[b"task_stage"] = b"pending"
        if mode == "default":
            for unset in (b"scheduled_at", b"next_run_at"):
                assert raw.get(unset, GO_ZERO_TIME.encode()) != b"", (task_id, unset)
                raw.setdefault(unset, GO_ZERO_TIME.encode())
        else:
            assert raw[b"scheduled_at"] and raw[b"next_run_at"], task_id
        parsed = parse_record(raw)
        if mode == "compat" and task_id in fine:
            assert (parsed.stage, raw[b"wasmq_stage"]) == ("pending", fine[task_id].encode())
    assert redis_client.zscore(keys.SCHEDULED, "sch") == due_s
    leases = redis_client.zrange(keys.SCHEDULED, 0, -1, withscores=True)
    assert all(score < 1e11 for _, score in leases)
    cron_expr = record(redis_client, "cron")[b"cron_expr"].decode()
    if mode == "compat":
        check_cron(cron_expr)
        assert cron_expr == "0 */5 * * * *"
        model = ReferenceWorker(redis_client)
        assert sorted(model.promote(now_s=due_s + 1)) == ["boom", "sch"]
        claimed = [model.claim(), model.claim(), model.claim()]
        assert sorted(r.id for r in claimed if r) == ["boom", "imm", "sch"]
    ReferenceWorker(redis_client).ack("boom")
    status = client.status("boom")
    assert (status.stage, status.error, status.outcome) == ("completed", "", "ok")
    assert status.extra["earlier_error"]


def test_reaper_leaves_a_reference_workers_lease(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    # A mixed fleet: the producer writes what the reference reads.
    client = Client(settings=compat(settings, True), client=redis_client)
    client.enqueue(echo, b"x", id="theirs")
    client.enqueue(echo, b"y", id="ours")
    now_s = time.time()
    model = ReferenceWorker(redis_client)
    taken = model.claim(now_s=now_s - 3600)
    assert taken is not None and taken.id == "theirs"
    assert redis_client.zscore(keys.TIMEOUT, "theirs") == int(now_s - 3600 + 30)
    claimed = Broker(redis_client, settings).claim(["default"], "w1", 1)
    assert [t.id for t in claimed] == ["ours"]
    redis_client.zadd(keys.TIMEOUT, {"ours": now_s - 1}, xx=True)
    reaper = Reaper(Broker(redis_client, settings), settings)
    assert sorted(reaper.run_once()) == [("ours", "requeued"), ("theirs", "foreign")]
    assert reaper.run_once() == [("theirs", "foreign")]
    assert redis_client.lrange("task_queue:processing", 0, -1) == [b"theirs"]
    assert record(redis_client, "theirs")[b"task_stage"] == b"in_progress"
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"ours"]
    model.ack("theirs")
    assert client.status("theirs").stage == "completed"
    assert redis_client.zcard(keys.TIMEOUT) == 0


@pytest.mark.parametrize("mode", ["default", "compat"])
def test_runs_for_max_retries_are_the_same_in_both_modes(
    trap: str, settings: Settings, redis_client: redis.Redis, mode: str
) -> None:
    s = compat(settings, mode == "compat")
    client = Client(settings=s, client=redis_client)
    client.enqueue(trap, id="t", max_retries=2)
    scheduler = Scheduler(redis_client, s)
    runs = 0
    deadline = time.monotonic() + 30
    while client.status("t").stage != "failed" and time.monotonic() < deadline:
        runs += run_burst(s, redis_client).stats.failed
        raw = record(redis_client, "t")
        if runs == 1:
            stages = (raw[b"task_stage"], raw.get(b"wasmq_stage"))
            wanted = (b"pending", b"retrying") if mode == "compat" else (b"retrying", None)
            assert stages == wanted
            assert client.status("t").stage == "retrying"
            assert raw[b"attempts"] == b"1"
        scheduler.run_once(now_ms=now_ms() + 60_000)
    assert runs == 3
    assert record(redis_client, "t")[b"attempts"] == b"3"


def test_compat_mode_keeps_records_and_writes_coarse_stages(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    s = compat(settings)
    client = Client(settings=s, client=redis_client)
    client.enqueue(echo, b"x", id="kept")
    client.schedule(echo, b"y", delay=3600, id="gone")
    assert run_burst(s, redis_client).stats.done == 1
    raw = record(redis_client, "kept")
    assert (raw[b"task_stage"], raw[b"attempts"]) == (b"completed", b"0")
    assert client.status("kept").attempts == 1  # runs, in either mode
    assert redis_client.pttl("task_metadata:kept") == -1
    assert client.cancel("gone") == "cancelled"
    raw = record(redis_client, "gone")
    assert (raw[b"task_stage"], raw[b"wasmq_stage"]) == (b"failed", b"cancelled")
    assert client.status("gone").stage == "cancelled"
    assert redis_client.pttl("task_metadata:gone") == -1
    parse_record(raw)
    # Out of compat mode the same records expire with their retention.
    plain = Client(settings=compat(settings, False), client=redis_client)
    plain.enqueue(echo, b"z", id="expires")
    assert run_burst(compat(settings, False), redis_client).stats.done == 1
    assert redis_client.pttl("task_metadata:expires") > 0


def test_a_reference_worker_that_moves_the_task_on_wins(
    settings: Settings, redis_client: redis.Redis
) -> None:
    client = Client(settings=settings, client=redis_client)
    produce(redis_client, "r", reference_hash("r", "x", 0, wasmq_stage="retrying"))
    assert client.status("r").stage == "retrying"
    ReferenceWorker(redis_client).claim()
    assert client.status("r").stage == "in_progress"
    with pytest.raises(ParseError):
        parse_record({**reference_hash("r", "x", 0), "task_stage": "retrying"})


@pytest.mark.processes
def test_reference_tasks_through_the_worker_pool(
    cli: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """``wasmq worker --burst --registry DIR``, the reference's worker command shape, in
    its own processes: the reference-produced tasks run, a damaged one is dead-lettered."""
    tasks_dir = tmp_path / "registry"
    tasks_dir.mkdir()
    (tasks_dir / "task_1.wat").write_text((ROOT / "tasks" / "echo.wat").read_text())
    for i in range(5):
        produce(redis_client, f"pool-{i}", reference_hash(f"pool-{i}", f"p{i}", 0))
    produce(redis_client, "pool-bad", reference_hash("pool-bad", "x", 0, timeout="soon"))
    proc = cli("worker", "--burst", "-c", "2", "--registry", str(tasks_dir), timeout=60)
    assert proc.returncode == 0, proc.stderr
    for i in range(5):
        assert redis_client.get(f"task_result:pool-{i}") == f"p{i}".encode()
    assert redis_client.lrange("task_queue:dlq", 0, -1) == [b"pool-bad"]
    assert b"timeout" in (redis_client.hget("task_metadata:pool-bad", "error") or b"")
    assert redis_client.llen("task_queue:processing") == 0
