"""``wasmq bench`` end to end on the private server: a small run, every number present,
the bench queue's keys gone afterwards."""

from __future__ import annotations

import json
from typing import Any

import redis

from runtime import keys


def test_bench_json_reports_rates_and_cleans_up(cli: Any, redis_client: redis.Redis) -> None:
    proc = cli("bench", "--json", "--tasks", "60", "--workers", "1", "--idle-samples", "5",
               "--one-by-one", "10", timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("enqueue_rate", "enqueue_one_rate", "process_rate", "latency_p50_ms",
                "latency_p90_ms", "latency_p99_ms", "load_latency_p99_ms"):  # fmt: skip
        assert data[key] > 0, key
    assert data["cores"] >= 1 and data["incomplete"] == 0
    assert "process" in proc.stderr  # the progress display
    assert not redis_client.keys("task_metadata:*")
    assert not redis_client.keys("task_queue:bench:*")
    assert redis_client.zcard(keys.TIMEOUT) == 0


def test_bench_refuses_a_missing_module(cli: Any) -> None:
    proc = cli("bench", "--module", "nope.wat", "--tasks", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --module nope.wat")
