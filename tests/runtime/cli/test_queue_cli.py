"""The queue commands of the CLI: enqueue, cancel, dlq, workers, reaper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.queue import keys
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Task
from runtime.settings import Settings

pytestmark = pytest.mark.processes

DIGEST = "ab" * 32


@pytest.fixture(autouse=True)
def registered(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.TASK_REGISTRY, "echo", json.dumps({"digest": DIGEST, "version": 3}))


def test_enqueue_prints_id_and_stores_task(cli: Any, redis_client: redis.Redis) -> None:
    proc = cli(
        "enqueue",
        "echo",
        "--payload",
        '{"name":"world"}',
        "--max-retries",
        "5",
        "--timeout",
        "1m30s",
        "--queue",
        "fast",
        "--memory",
        "64MiB",
    )
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()
    raw = redis_client.hgetall(f"task_metadata:{task_id}")
    assert raw[b"payload"] == b'{"name":"world"}'
    assert raw[b"max_retries"] == b"5"
    assert raw[b"timeout"] == b"1m30s"
    assert raw[b"queue"] == b"fast"
    assert raw[b"task_version"] == b"3"
    assert json.loads(raw[b"limits"]) == {"memory": 64 * 1024**2}
    assert redis_client.lrange("task_queue:fast:pending", 0, -1) == [task_id.encode()]


def test_enqueue_with_id_is_idempotent(cli: Any, redis_client: redis.Redis) -> None:
    first = cli("enqueue", "echo", "--id", "job-1", "--payload", "a")
    second = cli("enqueue", "echo", "--id", "job-1", "--payload", "b")
    assert first.returncode == second.returncode == 0
    assert first.stdout.strip() == second.stdout.strip() == "job-1"
    assert "exists already" in second.stderr
    assert redis_client.llen("task_queue:pending") == 1
    assert redis_client.hget("task_metadata:job-1", "payload") == b"a"


def test_enqueue_payload_from_file(cli: Any, redis_client: redis.Redis, tmp_path: Path) -> None:
    (tmp_path / "p.bin").write_bytes(b"\x00\xffraw")
    proc = cli("enqueue", "echo", "--payload", "@p.bin", "--id", "f1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "f1"
    assert redis_client.hget("task_metadata:f1", "payload") == b"\x00\xffraw"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "unknown task 'nope'"),
        (("echo", "--timeout", "abc"), "invalid timeout"),
        (("echo", "--id", "bad id"), "invalid task id"),
        (("echo", "--payload", "@missing.json"), "cannot read payload file"),
        (("bad/name",), "invalid task name"),
        (("echo", "--queue", "pending"), "reserved"),
    ],
)
def test_enqueue_errors_are_one_line(cli: Any, args: tuple[str, ...], message: str) -> None:
    proc = cli("enqueue", *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_enqueue_refuses_big_payload(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (1024**2 + 1))
    proc = cli("enqueue", "echo", "--payload", "@big")
    assert proc.returncode == 1 and "over the limit of 1048576 bytes" in proc.stderr


def test_enqueue_scheduled_and_cron(cli: Any, redis_client: redis.Redis) -> None:
    proc = cli("enqueue", "echo", "--in", "30s", "--id", "later")
    assert proc.returncode == 0, proc.stderr
    assert redis_client.zscore(keys.SCHEDULED, "later") is not None
    assert redis_client.hget("task_metadata:later", "task_kind") == b"1"
    past = cli("enqueue", "echo", "--at", "2001-01-01T00:00:00Z")
    assert past.returncode == 1 and "in the past" in past.stderr
    proc = cli("enqueue", "echo", "--cron", "*/10 * * * * *", "--id", "every10")
    assert proc.returncode == 0, proc.stderr
    raw = redis_client.hgetall("task_metadata:every10")
    assert raw[b"task_kind"] == b"2" and raw[b"cron_expr"] == b"*/10 * * * * *"
    assert redis_client.zscore(keys.SCHEDULED, "every10") is not None
    bad = cli("enqueue", "echo", "--cron", "not a cron")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")


def test_cancel(cli: Any, redis_client: redis.Redis) -> None:
    cli("enqueue", "echo", "--id", "c1", check=True)
    proc = cli("cancel", "c1")
    assert proc.returncode == 0 and "cancelled c1" in proc.stdout
    assert redis_client.hget("task_metadata:c1", "task_stage") == b"cancelled"
    assert redis_client.llen("task_queue:pending") == 0
    assert "already ended" in cli("cancel", "c1").stdout
    missing = cli("cancel", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no task nope"


def fail_to_dlq(redis_client: redis.Redis, settings: Settings, ids: list[str]) -> None:
    broker = Broker(redis_client, settings)
    for task_id in ids:
        broker.enqueue(Task(id=task_id, task_name="echo", max_retries=0))
    for task in broker.claim(["default"], "w", 100):
        assert isinstance(task, Task)
        broker.nack(Report(task, ok=False, error=f"trap in {task.id}", error_kind="trap"))


def test_dlq_list_redrive_purge(cli: Any, redis_client: redis.Redis, settings: Settings) -> None:
    fail_to_dlq(redis_client, settings, ["x1", "x2", "x3"])
    listed = json.loads(cli("dlq", "list", "--json", check=True).stdout)
    assert [r["id"] for r in listed] == ["x3", "x2", "x1"]
    assert listed[0]["error"] == "trap in x3" and listed[0]["attempts"] == 1
    assert isinstance(listed[0]["failed_ms"], int)
    table = cli("dlq", "list", check=True).stdout
    assert "trap in x1" in table and table.startswith("ID")
    proc = cli("dlq", "redrive", "x2")
    assert proc.returncode == 0 and "redrove 1" in proc.stdout
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"x2"]
    assert cli("dlq", "redrive", "x2").returncode == 1
    assert cli("dlq", "redrive").returncode == 1
    assert "purged 0" in cli("dlq", "purge", "--older-than", "7d", check=True).stdout
    refused = cli("dlq", "purge")  # stdin is no terminal here
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: dlq purge without --older-than or --queue deletes every dead letter;"
        " pass --yes to confirm"
    )
    assert redis_client.llen(keys.dlq()) == 2
    assert "purged 2" in cli("dlq", "purge", "--yes", check=True).stdout
    assert not redis_client.exists("task_metadata:x1")
    assert cli("dlq", "list", check=True).stdout.strip() == "dead-letter list is empty"
    fail_to_dlq(redis_client, settings, ["y1"])
    # x2 (redriven above) was claimed and failed again with y1.
    assert "redrove 2" in cli("dlq", "redrive", "--all", check=True).stdout


def test_dlq_redrive_says_which_version_runs_and_latest_moves_on(
    cli: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    fail_to_dlq(redis_client, settings, ["v1"])
    assert redis_client.hget(keys.task("v1"), "task_version") == b"3"
    newer = "cd" * 32
    redis_client.hset(keys.TASK_REGISTRY, "echo", json.dumps({"digest": newer, "version": 4}))
    stays = cli("dlq", "redrive", "v1", check=True).stdout.strip()
    assert stays == "redrove 1 task(s) (echo v3; v4 is current: --latest runs v4)"
    assert redis_client.hget(keys.task("v1"), "digest") == DIGEST.encode()
    broker = Broker(redis_client, settings)
    for task in broker.claim(["default"], "w", 1):
        assert isinstance(task, Task)
        broker.nack(Report(task, ok=False, error="again", error_kind="trap"))
    moved = cli("dlq", "redrive", "--all", "--latest", check=True).stdout.strip()
    assert moved == "redrove 1 task(s) (echo v4)"
    raw = redis_client.hgetall(keys.task("v1"))
    assert raw[b"digest"] == newer.encode() and raw[b"task_version"] == b"4"
    assert raw[b"task_stage"] == b"pending"


def test_workers_and_reaper_once(cli: Any, redis_client: redis.Redis, settings: Settings) -> None:
    assert cli("workers", check=True).stdout.strip() == "no workers"
    assert json.loads(cli("workers", "--json", check=True).stdout) == []
    broker = Broker(redis_client, settings)
    broker.enqueue(Task(id="r1", task_name="echo"))
    broker.claim(["default"], "w", 1)
    redis_client.zadd(keys.TIMEOUT, {"r1": 1})
    assert "recovered 1" in cli("reaper", "--once", check=True).stdout
    assert redis_client.lrange("task_queue:pending", 0, -1) == [b"r1"]
