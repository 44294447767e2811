"""How late after its due time is a scheduled task promoted, and picked up by an idle worker?

Runs one or more scheduler loops (threads, like the one inside ``wasmq worker``, or
processes with ``--processes``, like one per worker pool) and an idle consumer blocked
on ``BRPOP`` of the pending list, as an idle worker is (it takes everything there is and
completes it at once). Tasks are written the way enqueue writes them (hash +
``ZADD task_set:scheduled`` + a wake-up when due before everything else). Cases
(``--cases``, default ``wake,backlog,cron``):

- ``wake``: each task scheduled 50-500 ms ahead while the scheduler sleeps (wake-up path);
- ``backlog``: tasks scheduled seconds ahead, all known to the scheduler (sleep path);
- ``cron``: a ``* * * * * *`` entry, lateness of each run after its tick;
- ``cron-many``: ``--cron-entries`` one-second entries for ``--cron-seconds``: lateness
  of their runs and the share of ticks that fired;
- ``bulk``: ``--bulk-tasks`` one-off tasks due at the same millisecond (on a queue the
  consumer leaves alone): how long until all are pending, and their wake tokens.

Lateness = promotion time (``promoted_ms``, the scheduler's clock when its pass began) or
pick-up time minus the due time. For ``cron-many`` read the pick-up figures: one firing
call makes all its runs pending when it ends, while ``promoted_ms`` is when it began.
Usage: ``python benchmarks/scheduler_latency.py [--redis-url URL] [--tasks 200]
[--schedulers 3] [--processes] [--cases cron-many,bulk]``; without a URL it starts a
private embedded server.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from runtime.clock import now_ms
from runtime.queue import keys
from runtime.queue.task import Kind, Stage, Task, ms_to_score
from runtime.scheduling.scheduler import Scheduler, wake
from runtime.server import embedded
from runtime.settings import Settings

CASES = ("wake", "backlog", "cron", "cron-many", "bulk")
BULK_QUEUE = "bench-bulk"


def task_hash(
    task_id: str, due: int, *, kind: Kind = Kind.SCHEDULED, queue: str = "default"
) -> dict[str, Any]:
    task = Task(
        id=task_id,
        task_name="bench",
        kind=kind,
        stage=Stage.SCHEDULED,
        created_ms=now_ms(),
        queue=queue,
    )
    if kind == Kind.CRON:
        task.cron_expr, task.cron_tz, task.next_run_ms = "* * * * * *", "UTC", due
    else:
        task.scheduled_ms = due
    return task.to_hash()


def schedule(client: redis.Redis, task_id: str, due: int, *, kind: Kind = Kind.SCHEDULED) -> None:
    head = client.zrange(keys.SCHEDULED, 0, 0, withscores=True)
    pipe = client.pipeline()
    pipe.hset(keys.task(task_id), mapping=task_hash(task_id, due, kind=kind))
    pipe.zadd(keys.SCHEDULED, {task_id: ms_to_score(due)})
    pipe.execute()
    if not head or ms_to_score(due) < head[0][1]:
        wake(client)


class Consumer(threading.Thread):
    """Idle workers: blocked on the pending list, record when they got each id."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.picked: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            popped = self.client.brpop([keys.pending()], timeout=0.2)
            if not popped:
                continue
            ids = [popped[1]] + (self.client.rpop(keys.pending(), 1000) or [])
            at = now_ms()
            pipe = self.client.pipeline(transaction=False)
            for raw in ids:
                self.picked[raw.decode()] = at
                pipe.hset(keys.task(raw.decode()), "task_stage", Stage.COMPLETED)
            pipe.execute()


def report(name: str, values: list[int]) -> None:
    if not values:
        print(f"{name:34s} no samples")
        return
    ordered = sorted(values)

    def p(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(
        f"{name:34s} n={len(values):5d}  p50={statistics.median(values):6.1f} ms  "
        f"p95={p(0.95):4d} ms  p99={p(0.99):4d} ms  max={ordered[-1]:4d} ms  "
        f"within 50 ms: {sum(v <= 50 for v in values) * 100 / len(values):.1f}%"
    )


def lateness(
    client: redis.Redis, consumer: Consumer, ids: dict[str, int]
) -> tuple[list[int], list[int]]:
    promoted: list[int] = []
    picked: list[int] = []
    names = list(ids)
    for start in range(0, len(names), 1000):
        chunk = names[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for task_id in chunk:
            pipe.hget(keys.task(task_id), "promoted_ms")
        for task_id, raw in zip(chunk, pipe.execute(), strict=True):
            if raw is not None:
                promoted.append(int(raw) - ids[task_id])
            if task_id in consumer.picked:
                picked.append(consumer.picked[task_id] - ids[task_id])
    return promoted, picked


def run_scheduler(url: str, stop: Any) -> None:
    """One scheduler loop on its own connection, until ``stop`` is set."""
    client = redis.Redis.from_url(url)
    settings = Settings.load({"redis_url": url}, environ={}, env_file=None)
    Scheduler(client, settings).run(stop)


def case_wake(client: redis.Redis, consumer: Consumer, tasks: int) -> None:
    ids: dict[str, int] = {}
    for i in range(tasks):
        due = now_ms() + random.randint(50, 500)
        schedule(client, f"wake-{i}", due)
        ids[f"wake-{i}"] = due
        time.sleep(random.uniform(0.0, 0.03))
    time.sleep(0.8)
    promoted, picked = lateness(client, consumer, ids)
    report("wake: promoted after due", promoted)
    report("wake: picked up after due", picked)


def case_backlog(client: redis.Redis, consumer: Consumer, tasks: int) -> None:
    ids: dict[str, int] = {}
    start = now_ms() + 500
    for i in range(tasks):
        due = start + random.randint(0, 3000)
        schedule(client, f"backlog-{i}", due)
        ids[f"backlog-{i}"] = due
    time.sleep(4.0)
    promoted, picked = lateness(client, consumer, ids)
    report("backlog: promoted after due", promoted)
    report("backlog: picked up after due", picked)


def case_cron(client: redis.Redis, consumer: Consumer, seconds: int) -> None:
    first = (now_ms() // 1000 + 1) * 1000
    schedule(client, "every-second", first, kind=Kind.CRON)
    time.sleep((first - now_ms()) / 1000 + seconds + 0.5)
    runs = {
        run: int(run.rsplit(":", 1)[1])
        for run in consumer.picked
        if run.startswith("every-second:")
    }
    promoted, picked = lateness(client, consumer, runs)
    report("cron: run promoted after tick", promoted)
    report("cron: run picked up after tick", picked)
    client.zrem(keys.SCHEDULED, "every-second")


def case_cron_many(client: redis.Redis, consumer: Consumer, entries: int, seconds: int) -> None:
    names = [f"many-{i}" for i in range(entries)]
    first = (now_ms() // 1000 + 2) * 1000
    pipe = client.pipeline(transaction=False)
    for entry in names:
        pipe.hset(keys.task(entry), mapping=task_hash(entry, first, kind=Kind.CRON))
        pipe.zadd(keys.SCHEDULED, {entry: ms_to_score(first)})
    pipe.execute()
    wake(client)
    time.sleep((first - now_ms()) / 1000 + seconds + 0.7)
    client.zrem(keys.SCHEDULED, *names)
    ticks = [first + 1000 * s for s in range(seconds)]
    runs = {f"{entry}:{tick}": tick for entry in names for tick in ticks}
    pipe = client.pipeline(transaction=False)
    for run in runs:
        pipe.exists(keys.task(run))
    fired = sum(pipe.execute())
    pipe = client.pipeline(transaction=False)
    for entry in names:
        pipe.hmget(keys.task(entry), ["skipped_runs", "missed_runs"])
    counters = pipe.execute()
    skipped = sum(int(s or 0) for s, _ in counters)
    missed = sum(int(m or 0) for _, m in counters)
    promoted, picked = lateness(
        client, consumer, {r: t for r, t in runs.items() if r in consumer.picked}
    )
    print(
        f"cron-many: {entries} entries x {seconds} ticks: {fired} of {len(runs)} fired "
        f"({fired * 100 / len(runs):.1f}%), skipped_runs {skipped}, missed_runs {missed}"
    )
    report("cron-many: promoted after tick", promoted)
    report("cron-many: picked up after tick", picked)


def case_bulk(client: redis.Redis, tasks: int) -> None:
    names = [f"bulk-{i}" for i in range(tasks)]
    for start in range(0, tasks, 5000):
        pipe = client.pipeline(transaction=False)
        for task_id in names[start : start + 5000]:
            pipe.hset(keys.task(task_id), mapping=task_hash(task_id, 0, queue=BULK_QUEUE))
        pipe.execute()
    pending = keys.pending(BULK_QUEUE)
    # The writes above make the AOF grow enough for an automatic rewrite (a fork) that
    # would land in the middle of the promotion: have it now, before the due time.
    if client.info("persistence").get("aof_enabled"):
        with contextlib.suppress(redis.ResponseError):  # one is running already
            client.bgrewriteaof()
        while any(
            client.info("persistence")[k]
            for k in ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
        ):
            time.sleep(0.05)
    due = now_ms() + 1500
    for start in range(0, tasks, 10_000):
        client.zadd(keys.SCHEDULED, dict.fromkeys(names[start : start + 10_000], ms_to_score(due)))
    wake(client)
    while now_ms() < due:
        time.sleep(0.001)
    deadline = due + 60_000
    first_seen = None
    while now_ms() < deadline:
        length = client.llen(pending)
        if length and first_seen is None:
            first_seen = now_ms() - due
        if length >= tasks:
            break
        time.sleep(0.002)
    done = now_ms() - due
    length, tokens = client.llen(pending), client.llen(keys.wake(BULK_QUEUE))
    left = client.zcard(keys.SCHEDULED)
    print(
        f"bulk: {tasks} tasks due at once: first pending after {first_seen} ms, all {length} "
        f"pending after {done} ms ({length * 1000 / max(done, 1):,.0f}/s); "
        f"{tokens} wake tokens; {left} left in the scheduled set"
    )
    sample = names[:: max(1, tasks // 200)]
    pipe = client.pipeline(transaction=False)
    for task_id in sample:
        pipe.hget(keys.task(task_id), "promoted_ms")
    passes = sorted({int(raw) - due for raw in pipe.execute() if raw is not None})
    print(f"bulk: the scheduler passes that promoted them began {passes} ms after due")
    head = [raw.decode() for raw in client.lrange(pending, -3, -1)]
    print(f"bulk: next to be claimed {list(reversed(head))}")
    client.delete(pending, keys.wake(BULK_QUEUE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--schedulers", type=int, default=3)
    parser.add_argument(
        "--processes", action="store_true", help="one process per scheduler, not threads"
    )
    parser.add_argument("--cases", default="wake,backlog,cron", help=f"any of {','.join(CASES)}")
    parser.add_argument("--cron-seconds", type=int, default=10)
    parser.add_argument("--cron-entries", type=int, default=1000)
    parser.add_argument("--bulk-tasks", type=int, default=100_000)
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}: use {', '.join(CASES)}")

    state = Path(tempfile.mkdtemp(prefix="wasmq-bench-"))
    url = args.redis_url or embedded.ensure_running(state)
    client = redis.Redis.from_url(url)
    client.flushall()
    stop: Any
    loops: list[Any] = []
    if args.processes:
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        for _ in range(args.schedulers):
            loops.append(ctx.Process(target=run_scheduler, args=(url, stop)))
    else:
        stop = threading.Event()
        for _ in range(args.schedulers):
            loops.append(threading.Thread(target=run_scheduler, args=(url, stop)))
    for loop in loops:
        loop.start()
    consumer = Consumer(url)
    consumer.start()
    kind = "process(es)" if args.processes else "thread(s)"
    print(f"{args.schedulers} scheduler {kind}, one idle consumer, server {url.split('?')[0]}")
    try:
        for case in cases:
            if case == "wake":
                case_wake(client, consumer, args.tasks)
            elif case == "backlog":
                case_backlog(client, consumer, args.tasks)
            elif case == "cron":
                case_cron(client, consumer, args.cron_seconds)
            elif case == "cron-many":
                case_cron_many(client, consumer, args.cron_entries, args.cron_seconds)
            elif case == "bulk":
                case_bulk(client, args.bulk_tasks)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=5)
        consumer.stop.set()
        consumer.join(timeout=5)
        if not args.redis_url:
            embedded.stop(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
