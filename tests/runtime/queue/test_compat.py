"""Tasks written straight into Redis the way the reference's Go producer writes them.

No wasmq enqueue here: each test issues the producer's own commands with redis-py
(``MULTI; HSET task_metadata:<id> <14 fields>; LPUSH task_queue:pending <id>; EXEC``,
or ``ZADD task_set:scheduled`` for scheduled and cron tasks), then a real worker with
the real registry and sandbox runs them.

The reference scores ``task_set:scheduled`` in Unix *seconds* (``NextRunAt.Unix()``);
wasmq uses milliseconds. The promotion script reads a score below 1e11 as seconds and
rescores it in ms, so a reference entry is neither promoted early nor lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.scheduling.scheduler import Scheduler
from runtime.settings import Settings
from runtime.worker.loop import Worker
from tests.support.paths import ROOT

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@pytest.fixture
def echo(settings: Settings, redis_client: redis.Redis) -> str:
    """``task_1`` registered from the WAT echo example (returns its payload)."""
    Registry(settings, redis_client).register(ROOT / "tasks" / "echo.wat", name="task_1")
    return "task_1"


def reference_hash(task_id: str, payload: str, kind: int, **fields: str) -> dict[str, str]:
    """The 14 fields of the reference's ``Task.ToMap()``, in its formats."""
    out = {
        "id": task_id,
        "task_name": "task_1",
        "task_version": "",
        "task_stage": "pending",
        "payload": payload,
        "task_kind": str(kind),
        "created_at": "2026-03-29T12:00:00.123456789+05:30",
        "updated_at": "2026-03-29T12:00:00.123456789+05:30",
        "attempts": "0",
        "max_retries": "3",
        "timeout": "30s",
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


@pytest.mark.parametrize(
    "fields",
    [
        {"timeout": "30s", "scheduled_at": "", "next_run_at": ""},
        {"timeout": "1m30s"},
        {"timeout": "1.5s", "created_at": "2026-03-29T06:30:00Z"},
    ],
    ids=["empty-times", "zero-times", "utc"],
)
def test_reference_immediate_task_runs(
    echo: str, settings: Settings, redis_client: redis.Redis, fields: dict[str, str]
) -> None:
    produce(redis_client, "ref-1", reference_hash("ref-1", '{"name":"world"}', 0, **fields))
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get("task_result:ref-1") == b'{"name":"world"}'
    raw = redis_client.hgetall("task_metadata:ref-1")
    assert raw[b"task_stage"] == b"completed"
    assert raw[b"attempts"] == b"1"
    assert redis_client.lrange("task_queue:finished", 0, -1) == [b"ref-1"]
    assert redis_client.llen("task_queue:processing") == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0


def test_reference_scheduled_task_seconds_score(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    now_s = int(time.time())
    later = reference_hash(
        "later", "later", 1, task_stage="pending", scheduled_at="2099-01-01T00:00:00+05:30"
    )
    due = reference_hash("due", "due", 1, scheduled_at="2026-03-29T12:00:00+05:30")
    schedule(redis_client, "later", later, now_s + 3600)
    schedule(redis_client, "due", due, now_s - 1)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once() == 1
    # The future one is kept, rescored in ms, not promoted early.
    score = redis_client.zscore(keys.SCHEDULED, "later")
    assert score is not None and abs(score - (now_s + 3600) * 1000) < 1
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"due"]
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get("task_result:due") == b"due"
    # A later pass promotes it once its time (in seconds, now ms) comes.
    assert scheduler.run_once(now_ms=(now_s + 3601) * 1000) == 1
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"later"]


def test_reference_cron_task_promoted(
    echo: str, settings: Settings, redis_client: redis.Redis
) -> None:
    now_s = int(time.time())
    fields = reference_hash(
        "cron-1", "repeat", 2, task_stage="scheduled", cron_expr="*/10 * * * * *"
    )
    schedule(redis_client, "cron-1", fields, now_s - 1)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once() == 1
    runs = redis_client.lrange("task_queue:pending", 0, -1)
    assert len(runs) == 1 and runs[0].startswith(b"cron-1:")
    # The entry stays, in ms, at its next ten-second tick.
    score = redis_client.zscore(keys.SCHEDULED, "cron-1")
    assert score is not None and score > now_s * 1000 and int(score) % 10_000 == 0
    worker = run_burst(settings, redis_client)
    assert worker.stats.done == 1
    assert redis_client.get(f"task_result:{runs[0].decode()}") == b"repeat"


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
