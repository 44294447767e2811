"""How late after its due time is a scheduled task promoted, and picked up by an idle worker?

Runs one or more scheduler loops (threads, like the ones inside ``wasmq worker``) and an
idle consumer blocked on ``BRPOP`` of the pending list, as an idle worker is. Tasks are
written the way enqueue writes them (hash + ``ZADD task_set:scheduled`` + a wake-up when
due before everything else). Three cases:

- ``wake``: each task scheduled 50-500 ms ahead while the scheduler sleeps (wake-up path);
- ``backlog``: tasks scheduled seconds ahead, all known to the scheduler (sleep path);
- ``cron``: a ``* * * * * *`` entry, lateness of each run after its tick.

Lateness = promotion time (``promoted_ms``) or pick-up time minus the due time.
Usage: ``python benchmarks/scheduler_latency.py [--redis-url URL] [--tasks 200]
[--schedulers 3]``; without a URL it starts a private embedded server.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis

from runtime import keys, server
from runtime.scheduler import Scheduler, wake
from runtime.settings import Settings
from runtime.task import Kind, Stage, Task


def now() -> int:
    return int(time.time() * 1000)


def schedule(client: redis.Redis, task_id: str, due: int, *, kind: Kind = Kind.SCHEDULED) -> None:
    task = Task(id=task_id, task_name="bench", kind=kind, stage=Stage.SCHEDULED, created_ms=now())
    if kind == Kind.CRON:
        task.cron_expr, task.cron_tz, task.next_run_ms = "* * * * * *", "UTC", due
    else:
        task.scheduled_ms = due
    head = client.zrange(keys.SCHEDULED, 0, 0, withscores=True)
    pipe = client.pipeline()
    pipe.hset(keys.task(task_id), mapping=task.to_hash())  # type: ignore[arg-type]
    pipe.zadd(keys.SCHEDULED, {task_id: due})
    pipe.execute()
    if not head or due < head[0][1]:
        wake(client)


class Consumer(threading.Thread):
    """An idle worker: blocked on the pending list, records when it got each id."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.picked: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            popped = self.client.brpop([keys.pending()], timeout=0.2)
            if popped:
                task_id = popped[1].decode()
                self.picked[task_id] = now()
                self.client.hset(keys.task(task_id), "task_stage", Stage.COMPLETED)


def report(name: str, values: list[int]) -> None:
    if not values:
        print(f"{name:34s} no samples")
        return
    ordered = sorted(values)

    def p(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(
        f"{name:34s} n={len(values):4d}  median={statistics.median(values):6.1f} ms  "
        f"p95={p(0.95):4d} ms  p99={p(0.99):4d} ms  max={ordered[-1]:4d} ms  "
        f"within 100 ms: {sum(v <= 100 for v in values) * 100 / len(values):.1f}%"
    )


def lateness(
    client: redis.Redis, consumer: Consumer, ids: dict[str, int]
) -> tuple[list[int], list[int]]:
    promoted: list[int] = []
    picked: list[int] = []
    for task_id, due in ids.items():
        raw = client.hget(keys.task(task_id), "promoted_ms")
        if raw is not None:
            promoted.append(int(raw) - due)
        if task_id in consumer.picked:
            picked.append(consumer.picked[task_id] - due)
    return promoted, picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--schedulers", type=int, default=3)
    parser.add_argument("--cron-seconds", type=int, default=10)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="wasmq-bench-"))
    url = args.redis_url or server.ensure_running(state)
    client = redis.Redis.from_url(url)
    client.flushall()
    settings = Settings.load({"redis_url": url}, environ={}, env_file=None)
    stop = threading.Event()
    loops = []
    for _ in range(args.schedulers):
        loop_client = redis.Redis.from_url(url)
        thread = threading.Thread(target=Scheduler(loop_client, settings).run, args=(stop,))
        thread.start()
        loops.append(thread)
    consumer = Consumer(url)
    consumer.start()
    print(f"{args.schedulers} scheduler thread(s), one idle consumer, server {url.split('?')[0]}")
    try:
        # Wake-up path: each task due soon after it is written, scheduler idle meanwhile.
        ids: dict[str, int] = {}
        for i in range(args.tasks):
            due = now() + random.randint(50, 500)
            schedule(client, f"wake-{i}", due)
            ids[f"wake-{i}"] = due
            time.sleep(random.uniform(0.0, 0.03))
        time.sleep(0.8)
        report("wake: promoted after due", lateness(client, consumer, ids)[0])
        report("wake: picked up after due", lateness(client, consumer, ids)[1])

        # Sleep path: everything known in advance, due times spread over three seconds.
        ids = {}
        start = now() + 500
        for i in range(args.tasks):
            due = start + random.randint(0, 3000)
            schedule(client, f"backlog-{i}", due)
            ids[f"backlog-{i}"] = due
        time.sleep(4.0)
        report("backlog: promoted after due", lateness(client, consumer, ids)[0])
        report("backlog: picked up after due", lateness(client, consumer, ids)[1])

        # Cron: one run per second.
        first = (now() // 1000 + 1) * 1000
        schedule(client, "every-second", first, kind=Kind.CRON)
        time.sleep(args.cron_seconds + 0.5)
        runs = {
            run: int(run.rsplit(":", 1)[1])
            for run in consumer.picked
            if run.startswith("every-second:")
        }
        report("cron: run promoted after tick", lateness(client, consumer, runs)[0])
        report("cron: run picked up after tick", lateness(client, consumer, runs)[1])
    finally:
        stop.set()
        for thread in loops:
            thread.join(timeout=5)
        consumer.stop.set()
        consumer.join(timeout=5)
        if not args.redis_url:
            server.stop(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
