"""``wasmq bench`` end to end on the private server: a small run, every number present
and sane (no timing targets: those belong to the benchmarks), the bench queue's keys
gone afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.queue import keys

pytestmark = pytest.mark.processes

#: An echo whose allocator starts where ``_initialize`` says: without its initializer
#: (or a snapshot of what it left) every task traps.
INIT_ECHO = """(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $heap (i32.const 4096)))
  (func (export "alloc") (param $size i32) (result i32)
    (if (i32.eqz (global.get $heap)) (then (unreachable)))
    (global.get $heap))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
"""
SMALL = ["--tasks", "20", "--workers", "1", "--idle-samples", "3", "--one-by-one", "5"]
SMALL += ["--idle-workers", "", "--trickle-seconds", "0"]


@pytest.mark.slow
def test_bench_json_reports_rates_costs_and_cleans_up(cli: Any, redis_client: redis.Redis) -> None:
    # One drain worker, two trickle workers (idle latency with 1 and 2), a few 1 MiB tasks.
    args = ["bench", "--json", "--tasks", "60", "--workers", "1", "--idle-samples", "5"]
    args += ["--one-by-one", "10", "--idle-workers", "1", "--trickle-workers", "2"]
    args += ["--trickle-seconds", "0.5", "--large", "--large-tasks", "6"]
    proc = cli(*args, timeout=240)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    rates = ("enqueue_rate", "enqueue_one_rate", "process_rate")
    latencies = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "load_latency_p99_ms")
    for key in (*rates, *latencies):
        assert data[key] > 0, key
    assert data["cores"] >= 1 and data["incomplete"] == 0
    assert "process" in proc.stderr  # the progress display

    # Server CPU over the drain, and where it went.
    assert data["server_cpu_per_task_us"] > 0
    assert data["enqueue_server_cpu_per_task_us"] > 0
    commands = data["server_commands"]
    assert commands and all(c["calls_per_task"] > 0 for c in commands)
    per_task = [c["per_task_us"] for c in commands]
    assert per_task == sorted(per_task, reverse=True)
    assert data["claims_per_task"] > 0

    assert [p["workers"] for p in data["idle_latency"]] == [1, 2]
    for p in data["idle_latency"]:
        assert 0 < p["p50_ms"] <= p["p99_ms"]

    trickle = data["trickle"]
    assert trickle["workers"] == 2 and trickle["tasks"] == 50 and trickle["incomplete"] == 0
    assert trickle["claims_per_task"] >= 1  # every task needs a claim
    assert 0 <= trickle["empty_claims_per_task"] < trickle["claims_per_task"]
    assert trickle["server_cpu_per_task_us"] > 0 and trickle["workers_cpu_per_task_us"] > 0
    assert trickle["cpu_per_task_us"] > trickle["server_cpu_per_task_us"]

    large = data["large"]
    assert large["payload_bytes"] == 1024**2 and large["tasks"] == 6
    assert large["process_rate"] > 0 and large["enqueue_rate"] > 0
    assert large["incomplete"] == 0 and large["server_cpu_per_task_us"] > 0

    assert not redis_client.keys("task_metadata:*")
    assert not redis_client.keys("task_payload:*")
    assert not redis_client.keys("task_result:*")
    assert not redis_client.keys("task_queue:bench:*")
    assert not redis_client.exists(keys.wake("bench"), keys.throughput("bench"))
    assert redis_client.zcard(keys.TIMEOUT) == 0
    assert not redis_client.keys(keys.WORKER_PREFIX + "*")


def test_bench_text_report_names_the_costs(cli: Any) -> None:
    args = ["bench", "--tasks", "20", "--workers", "1", "--idle-samples", "3"]
    args += ["--one-by-one", "5", "--idle-workers", "", "--trickle-seconds", "0"]
    proc = cli(*args, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("processing", "drain CPU", "Valkey busiest commands", "latency idle"):
        assert label in out, label
    # The default WAT echo has no _initialize: nothing to pre-initialize.
    assert "no _initialize to snapshot" in out.splitlines()[0]
    assert "trickle" not in out and "large" not in out


@pytest.mark.slow
def test_bench_says_whether_the_module_ran_from_a_snapshot(cli: Any, tmp_path: Path) -> None:
    source = tmp_path / "init_echo.wat"
    source.write_text(INIT_ECHO)
    runs = {}
    for flag in ("--snapshot", "--no-snapshot"):
        proc = cli("bench", "--json", "--module", str(source), flag, *SMALL, timeout=180)
        assert proc.returncode == 0, proc.stderr
        runs[flag] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert runs[flag]["incomplete"] == 0 and runs[flag]["process_rate"] > 0
    snap, built = runs["--snapshot"], runs["--no-snapshot"]
    assert snap["snapshot"]["taken"] is True and snap["snapshot"]["init_ms"] >= 0
    assert built["snapshot"] == {"taken": False, "reason": built["snapshot"]["reason"]}
    assert "--no-snapshot" in built["snapshot"]["reason"]
    # The snapshot is the module without its _initialize: another module, its own size.
    assert snap["module_bytes"] > 0 and built["module_bytes"] > 0
    assert snap["module_bytes"] != built["module_bytes"]

    text = cli("bench", "--module", str(source), "--no-snapshot", *SMALL, timeout=180)
    assert text.returncode == 0, text.stderr
    assert "as built: snapshots are off" in text.stdout.splitlines()[0]


def test_bench_refuses_a_missing_module(cli: Any) -> None:
    proc = cli("bench", "--module", "nope.wat", "--tasks", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --module nope.wat")


def test_bench_refuses_bad_worker_counts(cli: Any) -> None:
    proc = cli("bench", "--idle-workers", "1,x", "--tasks", "1")
    assert proc.returncode == 2
    assert "1,2,4" in proc.stderr
