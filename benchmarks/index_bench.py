"""The dashboard's task list at scale: page times with 1,000,000 task records.

Seeds ``--records`` task records (default 1,000,000) in the shape a completed run leaves
(90% completed, 5% dead-lettered, 5% pending; 4 queues, 10 task names) plus their entries
in the task index, the way the enqueue script writes them, then times pages of
``Client.browse`` (what the dashboard's ``/tasks`` calls) and of the ``/tasks`` page itself
(rendered by the dashboard app in-process), each ``--reps`` times: the first page, a page
50 cursors deep, a queue filter, a task filter, queue + task, a time range in the middle of
the data, a rare stage (failed) and an id search. Target: every page under 200 ms.

Usage: ``python benchmarks/index_bench.py [--records 1000000] [--reps 20]
[--redis-url URL] [--json]``; without a URL it starts a private embedded server (about
1 GB of memory at 1M records).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.client import Client
from runtime.queue import keys
from runtime.server import embedded
from runtime.settings import Settings

QUEUES = ("default", "reports", "thumbs", "mail")
NAMES = tuple(f"task_{i}" for i in range(10))
SEED_BATCH = 5_000


def seed(client: Client, records: int, start_ms: int) -> dict[str, Any]:
    """``records`` tasks one every 2 ms before ``start_ms``; returns a few picked ids."""
    r = client.redis
    rng = random.Random(7)
    picked: dict[str, Any] = {}
    pipe = r.pipeline(transaction=False)
    for i in range(records):
        task_id = f"{i:08x}-bench-{rng.getrandbits(32):08x}"
        queue = QUEUES[i % len(QUEUES)]
        name = NAMES[(i // 7) % len(NAMES)]
        roll = rng.random()
        stage = "completed" if roll < 0.90 else ("failed" if roll < 0.95 else "pending")
        enq = start_ms - (records - i) * 2
        fields = {
            "id": task_id, "task_name": name, "task_version": "1", "task_stage": stage,
            "queue": queue, "task_kind": "0", "attempts": "1", "max_retries": "3",
            "timeout": "30s", "created_at": "2026-12-01T00:00:00Z", "enqueued_ms": enq,
            "updated_at": "2026-12-01T00:00:00Z", "digest": "ab" * 32, "started_ms": enq + 1,
        }  # fmt: skip
        if stage != "pending":
            fields |= {"finished_ms": enq + 2, "duration_ms": "0.4", "worker": "w1"}
        if stage == "failed":
            fields |= {"error": "trap: unreachable", "error_kind": "trap", "retryable": "0"}
        pipe.hset(keys.task(task_id), mapping=fields)
        pipe.zadd(keys.index_queue(queue), {task_id: enq})
        pipe.zadd(keys.index_name(name), {task_id: enq})
        if stage == "failed":
            pipe.lpush(keys.dlq(queue), task_id)
        elif stage == "pending":
            pipe.lpush(keys.pending(queue), task_id)
        if i == records // 2:
            picked |= {"middle_ms": enq, "middle_id": task_id}
        if (i + 1) % SEED_BATCH == 0:
            pipe.execute()
    pipe.execute()
    r.sadd(keys.QUEUES, *QUEUES)
    return picked


def timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
    fn()  # warm
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2),
        "max_ms": round(samples[-1], 2),
    }


def deep_cursor(client: Client, pages: int) -> str:
    cursor = None
    for _ in range(pages):
        cursor = client.browse(limit=50, cursor=cursor).next_cursor
    assert cursor is not None
    return cursor


def measure(client: Client, reps: int, picked: dict[str, Any]) -> dict[str, Any]:
    mid = int(picked["middle_ms"])
    cursor = deep_cursor(client, 50)
    cases: dict[str, Callable[[], Any]] = {
        "first page": lambda: client.browse(limit=50),
        "page 51 (cursor)": lambda: client.browse(limit=50, cursor=cursor),
        "queue filter": lambda: client.browse(queue="thumbs", limit=50),
        "task filter": lambda: client.browse(task="task_3", limit=50),
        "queue + task": lambda: client.browse(queue="mail", task="task_5", limit=50),
        "time range (middle)": lambda: client.browse(since_ms=mid - 60_000, until_ms=mid, limit=50),
        "stage failed (5%)": lambda: client.browse(stage="failed", limit=50),
        "id search": lambda: client.status(str(picked["middle_id"])),
    }
    out: dict[str, Any] = {name: timed(fn, reps) for name, fn in cases.items()}
    try:
        from starlette.testclient import TestClient

        from runtime.dashboard.app import create_app

        http = TestClient(create_app(client))
        if http.get("/tasks").status_code == 200:
            out["GET /tasks (rendered)"] = timed(lambda: http.get("/tasks"), reps)
            out["GET /tasks?stage=failed"] = timed(lambda: http.get("/tasks?stage=failed"), reps)
            out["GET /tasks/<id>"] = timed(lambda: http.get(f"/tasks/{picked['middle_id']}"), reps)
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--redis-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wasmq-index-bench-"))
    try:
        url = args.redis_url or embedded.ensure_running(work / "server")
        settings = Settings.load({"redis_url": url}, environ={}, env_file=None)
        client = Client(settings=settings)
        client.redis.flushall()
        t0 = time.perf_counter()
        picked = seed(client, args.records, int(time.time() * 1000))
        seeded = time.perf_counter() - t0
        used = client.redis.info("memory")["used_memory"]
        results = measure(client, args.reps, picked)
        report = {
            "records": args.records,
            "seed_s": round(seeded, 1),
            "server_memory_mb": round(used / 1e6),
            "pages": results,
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(
                f"{args.records:,} records seeded in {seeded:.1f} s; server memory"
                f" {used / 1e6:,.0f} MB"
            )
            print(f"{'page':<28}{'median ms':>10}{'p95 ms':>9}{'max ms':>9}")
            for name, row in results.items():
                print(f"{name:<28}{row['median_ms']:>10}{row['p95_ms']:>9}{row['max_ms']:>9}")
        client.redis.flushall()
    finally:
        if not args.redis_url:
            embedded.stop(work / "server")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
