"""What a rate and concurrency limit costs per task: claim and ack throughput with and
without one.

Tasks are enqueued, then claimed and acked through the broker as a worker does (no
sandbox: the queue's own cost is what is measured), one batch size at a time. Cases:

- ``none``: no limit set (claims pay one EXISTS);
- ``other``: limits set, but on another task name (the claim reads the limits, the
  tasks match none);
- ``limited``: the tasks' own name has a concurrency and a rate limit, both too high to
  hold anything back, so every claim takes a slot and a window place and every ack
  gives the slot back.

Throughput is the best of ``--rounds`` rounds; the ratio is each case against ``none``.
Usage: ``python benchmarks/limits_bench.py [--redis-url URL] [--tasks 4000]
[--batches 1,16] [--rounds 3]``; without a URL it starts a private embedded server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import redis

from runtime.queue import keys
from runtime.queue import throttles as limits
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Task
from runtime.server import embedded
from runtime.settings import Settings

CASES = ("none", "other", "limited")
TASK = "bench"
QUEUE = "bench-limits"


def prepare(client: redis.Redis, case: str) -> None:
    client.delete(keys.LIMITS, keys.LIMIT_DUE)
    if case == "other":
        limits.set_limit(client, limits.make_limit("task:elsewhere", 10, "100/s"))
    elif case == "limited":
        limits.set_limit(client, limits.make_limit(f"task:{TASK}", 100_000, "1000000/s"))
    client.delete(keys.LIMIT_DUE)


def one_round(broker: Broker, case: str, tasks: int, batch: int) -> float:
    """Tasks claimed and acked per second."""
    client = broker.redis
    prepare(client, case)
    broker.enqueue_many(
        [Task(id=f"{case}-{batch}-{i}", task_name=TASK, queue=QUEUE) for i in range(tasks)]
    )
    done = 0
    t0 = time.perf_counter()
    while done < tasks:
        got = [t for t in broker.claim([QUEUE], "bench-worker", batch) if isinstance(t, Task)]
        if not got:
            raise RuntimeError(f"{case}: a claim took nothing with {tasks - done} tasks left")
        broker.finish([Report(t, ok=True, started_ms=t.started_ms, duration_ms=0.1) for t in got])
        done += len(got)
    elapsed = time.perf_counter() - t0
    for name in (keys.finished(QUEUE), keys.throughput(QUEUE)):
        client.delete(name)
    with contextlib.suppress(redis.RedisError):
        pipe = client.pipeline(transaction=False)
        for i in range(tasks):
            pipe.delete(keys.task(f"{case}-{batch}-{i}"), keys.result(f"{case}-{batch}-{i}"))
        pipe.execute()
    return tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="One JSON object instead of a table.")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="wasmq-bench-"))
    url = args.redis_url or embedded.ensure_running(state)
    try:
        client = redis.Redis.from_url(url)
        client.hset(keys.TASK_REGISTRY, TASK, json.dumps({"digest": "00" * 32, "version": 1}))
        settings = Settings.load({"redis_url": url}, environ={}, env_file=None)
        broker = Broker(client, settings)
        results: dict[str, dict[str, float]] = {}
        for batch in (int(b) for b in args.batches.split(",")):
            rates = {case: 0.0 for case in CASES}
            for _ in range(args.rounds):
                # Interleaved, so a drift of the machine's load touches every case alike.
                for case in CASES:
                    rates[case] = max(rates[case], one_round(broker, case, args.tasks, batch))
            results[str(batch)] = rates
        client.delete(keys.LIMITS, keys.LIMIT_DUE, keys.limit_rate(f"task:{TASK}"))
        client.hdel(keys.TASK_REGISTRY, TASK)
    finally:
        if not args.redis_url:
            embedded.stop(state)
            shutil.rmtree(state, ignore_errors=True)
    if args.json:
        print(json.dumps({"tasks": args.tasks, "tasks_per_second": results}))
        return
    print(f"{'BATCH':>5} {'CASE':<8} {'TASKS/S':>9} {'VS NONE':>8}")
    for batch, rates in results.items():
        for case, rate in rates.items():
            print(f"{batch:>5} {case:<8} {rate:>9.0f} {rate / rates['none']:>8.3f}")


if __name__ == "__main__":
    main()
