"""``wasmq status|result|logs|list|stats``: readable output, JSON shapes, errors.

Records are made by the real broker in-process; the CLI runs as a subprocess.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from runtime.clock import now_ms
from runtime.output.chunks import LogChunk
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.queries import STATS_SCHEDULED_SAMPLE
from runtime.queue.task import Kind
from runtime.settings import Settings
from tests.support.seeding import enqueue, register, run, seed_pending, seed_scheduled

pytestmark = pytest.mark.processes

STATUS_KEYS = {
    "id",
    "task_name",
    "stage",
    "queue",
    "kind",
    "attempts",
    "max_retries",
    "outcome",
    "error",
    "worker",
    "digest",
    "version",
    "enqueued_ms",
    "scheduled_ms",
    "started_ms",
    "finished_ms",
    "duration_ms",
    "cron_id",
    "cron_expr",
    "next_run_ms",
    "log_bytes",
    "log_dropped_bytes",
    "log_file",
    "retryable",
    "progress",
    "progress_message",
    "progress_ms",
    "timeout_ms",
    "memory_limit_bytes",
    "extra",
}
STATS_KEYS = {
    "queue",
    "pending",
    "in_progress",
    "scheduled",
    "retrying",
    "cron",
    "finished",
    "dlq",
    "completed_last_minute",
    "oldest_pending_age_ms",
    "scheduled_estimated",
}


@pytest.fixture
def broker(redis_client: redis.Redis, settings: Settings) -> Broker:
    register(redis_client, "job")
    b = Broker(redis_client, settings)
    enqueue(b, "ok-1", created_ms=now_ms() - 2000)
    logs = [LogChunk(1, 0, b"to stdout\n"), LogChunk(2, 1000, b"to stderr\n")]
    run(b, result=b"the result", logs=logs, log_dropped=99)
    enqueue(b, "bad-1", max_retries=0, created_ms=now_ms() - 1000)
    run(b, ok=False, error="exited with code 3", error_kind="exit")
    enqueue(b, "wait-1")
    return b


@pytest.mark.parametrize("command", ["status", "result", "logs"])
def test_unknown_id_is_one_line_and_exit_1(cli: Any, broker: Broker, command: str) -> None:
    for extra in ([], ["--json"]):
        proc = cli(command, "no-such-id", *extra)
        assert proc.returncode == 1
        assert proc.stderr.strip() == "error: no task no-such-id"
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_status_readable_and_json(cli: Any, broker: Broker) -> None:
    proc = cli("status", "ok-1", check=True)
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert lines["stage"] == "completed" and lines["outcome"] == "ok"
    assert lines["worker"] == "w-test" and lines["attempts"].startswith("1 ")
    assert lines["task"] == "job v1" and lines["digest"] == "ab" * 32
    assert lines["logs"] == "20 B, 99 B dropped"
    assert lines["duration"] == "1.50 ms" and lines["timeout"] == "30.0 s"

    data = json.loads(cli("status", "bad-1", "--json", check=True).stdout)
    assert set(data) == STATUS_KEYS
    assert (data["stage"], data["outcome"], data["error"]) == (
        "failed",
        "exit",
        "exited with code 3",
    )
    assert "exited with code 3" in cli("status", "bad-1").stdout


def test_result_raw_json_failed_and_timeout(cli: Any, broker: Broker) -> None:
    assert cli("result", "ok-1", check=True).stdout == "the result\n"  # text ends a line
    assert cli("result", "ok-1", "--raw", check=True).stdout == "the result"
    assert json.loads(cli("result", "ok-1", "--json", check=True).stdout) == {
        "id": "ok-1",
        "result_bytes": 10,
        "encoding": "utf-8",
        "result": "the result",
    }

    proc = cli("result", "bad-1")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "error: task bad-1 failed: exited with code 3"

    proc = cli("result", "wait-1")
    assert proc.returncode == 1 and "is pending" in proc.stderr
    proc = cli("result", "wait-1", "--wait", "--timeout", "0.3s")
    assert proc.returncode == 1 and "still pending after 0.3s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_binary_result_as_base64(cli: Any, broker: Broker) -> None:
    run(broker, result=b"\xff\x00\xfe")  # wait-1, next in line
    data = json.loads(cli("result", "wait-1", "--json", check=True).stdout)
    assert data["encoding"] == "base64"
    assert base64.b64decode(data["result"]) == b"\xff\x00\xfe"


def test_logs_readable_json_stream_and_truncation(cli: Any, broker: Broker) -> None:
    proc = cli("logs", "ok-1", check=True)
    assert proc.stdout.splitlines() == [
        "1970-01-01T00:00:00.000Z stdout | to stdout",
        "1970-01-01T00:00:01.000Z stderr | to stderr",
        "[output truncated: 99 bytes dropped at the log limit]",
    ]
    proc = cli("logs", "ok-1", "--stream", "stderr", check=True)
    assert proc.stdout.splitlines()[0] == "1970-01-01T00:00:01.000Z stderr | to stderr"
    assert cli("logs", "ok-1", "--follow", check=True).stdout == cli("logs", "ok-1").stdout

    # One array; with --follow the same objects as JSON Lines.
    rows = json.loads(cli("logs", "ok-1", "--json", check=True).stdout)
    follow = cli("logs", "ok-1", "--json", "--follow", check=True).stdout.splitlines()
    assert [json.loads(line) for line in follow] == rows
    assert rows == [
        {
            "id": "ok-1",
            "stream": "stdout",
            "ts_ms": 0,
            "data": "to stdout\n",
        },
        {
            "id": "ok-1",
            "stream": "stderr",
            "ts_ms": 1000,
            "data": "to stderr\n",
        },
        {"id": "ok-1", "truncated": True, "dropped_bytes": 99},
    ]
    proc = cli("logs", "ok-1", "--stream", "stdin")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid value for '--stream': 'stdin' is not one of")
    assert "Traceback" not in proc.stderr
    # A task with no output prints nothing.
    assert cli("logs", "wait-1", check=True).stdout == ""


def test_list_readable_and_json(cli: Any, broker: Broker) -> None:
    enqueue(
        broker,
        "sched-1",
        kind=Kind.SCHEDULED,
        scheduled_ms=now_ms() + 60_000,
        created_ms=now_ms() + 1000,
    )
    rows = json.loads(cli("list", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == ["sched-1", "wait-1", "bad-1", "ok-1"]
    assert all(set(r) == STATUS_KEYS for r in rows)
    rows = json.loads(cli("list", "--stage", "failed", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == ["bad-1"]
    rows = json.loads(cli("list", "--limit", "1", "--task", "job", "--json").stdout)
    assert [r["id"] for r in rows] == ["sched-1"]
    assert json.loads(cli("list", "--queue", "nothing-here", "--json").stdout) == []

    lines = cli("list", check=True).stdout.splitlines()
    assert lines[0].split() == ["ID", "TASK", "QUEUE", "STAGE", "TRIES", "ENQUEUED"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["sched-1", "job", "default", "scheduled"],
        ["wait-1", "job", "default", "pending"],
        ["bad-1", "job", "default", "failed"],
        ["ok-1", "job", "default", "completed"],
    ]
    proc = cli("list", "--task", "nothing")
    assert proc.returncode == 0 and proc.stdout == "" and "no tasks" in proc.stderr


def test_stats_readable_and_json(cli: Any, broker: Broker, redis_client: redis.Redis) -> None:
    # The completion of ok-1 as the ack script counts it (written here: known exactly).
    redis_client.delete(keys.throughput("default"))
    redis_client.hset(keys.throughput("default"), str(now_ms() // 1000), 1)
    data = json.loads(cli("stats", "--json", check=True).stdout)
    assert set(data) == {"now_ms", "queues", "scheduled", "limits"}
    assert data["limits"] == []  # no limit set
    assert data["scheduled"] == {"total": 0, "sampled": 0, "estimated": False}
    (default,) = data["queues"]
    assert set(default) == STATS_KEYS
    assert default["queue"] == "default"
    assert (default["pending"], default["finished"], default["dlq"]) == (1, 1, 1)
    assert default["completed_last_minute"] == 1
    assert isinstance(default["oldest_pending_age_ms"], int)

    proc = cli("stats", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "PENDING", "RUNNING"]
    assert lines[1].split()[:2] == ["default", "1"]
    assert proc.stderr == ""


def test_stats_marks_estimates_of_a_large_scheduled_set(
    cli: Any, redis_client: redis.Redis
) -> None:
    total = STATS_SCHEDULED_SAMPLE + 500
    seed_scheduled(redis_client, total)
    data = json.loads(cli("stats", "--json", check=True).stdout)
    assert data["scheduled"] == {
        "total": total,
        "sampled": STATS_SCHEDULED_SAMPLE,
        "estimated": True,
    }
    assert all(q["scheduled_estimated"] for q in data["queues"])
    by_queue = {q["queue"]: q for q in data["queues"]}
    default, emails = by_queue["default"], by_queue["emails"]
    split = default["scheduled"] + default["retrying"] + emails["cron"]
    assert abs(split - total) <= 3  # each figure is rounded

    proc = cli("stats", check=True)
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert rows["emails"][5].startswith("~") and rows["default"][3].startswith("~")
    assert proc.stderr.strip() == (
        f"~ estimated: split from {STATS_SCHEDULED_SAMPLE} random entries"
        f" of the {total} in task_set:scheduled"
    )


def test_list_says_when_its_scan_stopped_short(cli: Any, redis_client: redis.Redis) -> None:
    register(redis_client, "job")
    seed_pending(redis_client, 300)
    redis_client.hset(keys.task("p-0000010"), "task_name", "rare")
    proc = cli("list", "--task", "rare", "--scan", "100", "--json", check=True)
    assert json.loads(proc.stdout) == []
    assert proc.stderr.strip() == (
        "note: read the newest 100 ids of each list (and the 100 soonest due scheduled"
        " tasks) for the filters; older tasks may match too (--scan N)"
    )
    proc = cli("list", "--task", "rare", check=True)
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == ["p-0000010"]
    assert proc.stderr == ""
