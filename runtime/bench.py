"""``wasmq bench``: enqueue, drain and time a batch of tasks against a real pool.

The workers run as ``wasmq worker`` subprocesses on a queue of their own (``bench``), so
what is measured is the real product: leases, atomic acks, capture, limits and stored
results all stay on. Phases, in order:

1. bulk enqueue rate (``N`` tasks in pipelined batches) and one-by-one enqueue rate (a
   sample of single calls), with no worker running, as the peer harness measures the
   other queues;
2. the pool starts and drains that backlog: the processing rate runs from the first
   ``started_ms`` to the last ``finished_ms`` (interpreter start-up is not counted);
3. latency under load: a steady stream at half that rate for about two seconds, from
   each task's ``enqueued_ms`` to its ``finished_ms``;
4. idle latency: one task at a time, timed from just before the enqueue to the
   ``task_done:<id>`` message.

Every key of the bench queue and of its tasks is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from runtime import keys
from runtime.client import Client
from runtime.errors import WasmqError
from runtime.settings import Settings

QUEUE = "bench"
#: Written to a temporary file when the repository's tasks/echo.wat is not around
#: (an installed wheel): the same handler, payload in, payload out.
ECHO_WAT = """(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.div_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                (i32.const 65536))))
          (then (unreachable)))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
)
"""
ENQUEUE_CHUNK = 1000


@dataclasses.dataclass
class BenchOptions:
    tasks: int = 10_000
    workers: int = 2
    module: Path | None = None
    payload_size: int = 64
    idle_samples: int = 200
    one_by_one: int = 1000


Progress = Callable[[str, int, int], None]


def default_module() -> Path:
    """tasks/echo.wat of the source tree, else the embedded copy in a temporary file."""
    here = Path(__file__).resolve().parent.parent / "tasks" / "echo.wat"
    if here.is_file():
        return here
    path = Path(tempfile.gettempdir()) / "wasmq-bench-echo.wat"
    path.write_text(ECHO_WAT)
    return path


def make_payload(size: int) -> bytes:
    """A JSON object of about ``size`` bytes that every example handler accepts."""
    pad = max(size - len(b'{"name": ""}'), 1)
    return b'{"name": "' + b"x" * pad + b'"}'


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99)}


class Bench:
    def __init__(self, settings: Settings, options: BenchOptions, progress: Progress) -> None:
        self.settings = dataclasses.replace(settings, queue=QUEUE)
        self.options = options
        self.progress = progress
        self.client = Client(settings=self.settings)
        self.redis = self.client.redis
        self.ids: list[str] = []
        self.pool: subprocess.Popen[bytes] | None = None

    # -- set-up and tear-down ------------------------------------------------------------

    def register(self) -> str:
        from runtime.registry import Registry

        module = self.options.module or default_module()
        if not module.is_file():
            raise WasmqError(f"--module {module} does not exist; pass a task source file")
        name = "bench_" + re.sub(r"[^A-Za-z0-9_.-]", "_", module.stem)
        Registry(self.settings, self.redis).register(module, name=name)
        return name

    def start_pool(self) -> None:
        before = {m.decode() for m in self.redis.zrange(keys.WORKERS, 0, -1)}
        command = [sys.executable, "-c", "from runtime.cli import main; main()"]
        if self.settings.redis_url:
            command += ["--redis-url", self.settings.redis_url]
        command += ["--state-dir", str(self.settings.state_dir)]
        command += ["--module-dir", str(self.settings.module_dir), "--log-level", "warning"]
        command += ["worker", "-q", QUEUE]
        command += ["-c", str(self.options.workers), "--no-scheduler"]
        env = dict(os.environ)
        self.pool = subprocess.Popen(command, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.pool.poll() is not None:
                raise WasmqError(f"the worker pool exited with {self.pool.returncode} at start")
            now = {m.decode() for m in self.redis.zrange(keys.WORKERS, 0, -1)}
            if len(now - before) >= self.options.workers:
                return
            time.sleep(0.05)
        raise WasmqError("the worker pool did not start within 60 s; see its log above")

    def stop_pool(self) -> None:
        if self.pool is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pool.pid, signal.SIGTERM)
        try:
            self.pool.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pool.pid, signal.SIGKILL)
            self.pool.wait()
        self.pool = None

    def cleanup(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(self.ids), 1000):
            chunk = self.ids[start : start + 1000]
            for task_id in chunk:
                pipe.delete(keys.task(task_id), keys.result(task_id), keys.logs(task_id))
                pipe.delete(keys.log_stream(task_id))
            pipe.zrem(keys.TIMEOUT, *chunk)
            pipe.execute()
        for part in ("pending", "processing", "finished", "dlq"):
            pipe.delete(keys.queue(QUEUE, part))
        pipe.delete(keys.completions(QUEUE))
        pipe.srem(keys.QUEUES, QUEUE)
        pipe.execute()

    # -- phases --------------------------------------------------------------------------

    def wait_done(self, count: int, label: str, timeout: float = 600.0) -> None:
        """Until ``count`` tasks of this run have completed (or failed for good)."""
        # The completions zset keeps two minutes: enough for a bench-sized drain.
        key = keys.completions(QUEUE)
        deadline = time.monotonic() + timeout
        total = len(self.ids)
        while True:
            done = int(self.redis.zcard(key)) + int(self.redis.llen(keys.dlq(QUEUE)))
            self.progress(label, min(done, count), count)
            if done >= count and total:
                return
            if time.monotonic() > deadline:
                raise WasmqError(f"only {done} of {count} tasks finished in {timeout:.0f} s")
            time.sleep(0.02)

    def idle_latency(self, name: str, payload: bytes) -> list[float]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(keys.done_channel("*"))
        out: list[float] = []
        try:
            for i in range(self.options.idle_samples):
                task = self.client.task(name, payload)
                self.ids.append(task.id)
                channel = keys.done_channel(task.id).encode()
                t0 = time.perf_counter()
                self.client.submit(task)
                deadline = t0 + 10.0
                while True:
                    # None also stands for an ignored subscribe confirmation.
                    message = pubsub.get_message(timeout=max(deadline - time.perf_counter(), 0))
                    if message is not None and message.get("channel") == channel:
                        break
                    if time.perf_counter() > deadline:
                        raise WasmqError(f"no result for idle task {task.id} within 10 s")
                out.append((time.perf_counter() - t0) * 1000)
                self.progress("idle latency", i + 1, self.options.idle_samples)
                # Let both workers go back to sleep, as a real idle pool would be.
                time.sleep(0.002)
        finally:
            pubsub.close()
        return out

    def enqueue_one(self, name: str, payload: bytes) -> float:
        tasks = [self.client.task(name, payload) for _ in range(self.options.one_by_one)]
        self.ids.extend(t.id for t in tasks)
        t0 = time.perf_counter()
        for i, task in enumerate(tasks):
            self.client.submit(task)
            if i % 100 == 99:
                self.progress("enqueue one by one", i + 1, len(tasks))
        return len(tasks) / (time.perf_counter() - t0)

    def enqueue_bulk(self, name: str, payload: bytes) -> tuple[float, list[str]]:
        n = self.options.tasks
        ids: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            done = self.client.enqueue_many([(name, payload)] * count)
            ids.extend(t.id for t in done)
            self.progress("enqueue bulk", start + count, n)
        rate = n / (time.perf_counter() - t0)
        self.ids.extend(ids)
        return rate, ids

    def loaded_latency(self, name: str, payload: bytes, rate: float) -> list[float]:
        """Enqueue-to-result times of a steady stream at ``rate`` tasks/s for ~2 s (half
        the measured processing rate: a busy pool that keeps up)."""
        rate = max(rate, 10.0)
        total = int(min(self.options.tasks, rate * 2))
        step = 10
        ids: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, total, step):
            delay = t0 + start / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            done = self.client.enqueue_many([(name, payload)] * min(step, total - start))
            ids.extend(t.id for t in done)
            self.progress("steady load", len(ids), total)
        self.ids.extend(ids)
        self.wait_done(len(self.ids), "drain steady load")
        return [float(r[2] - r[0]) for r in self.timings(ids)]

    def timings(self, ids: Sequence[str]) -> list[tuple[int, int, int]]:
        fields = ("enqueued_ms", "started_ms", "finished_ms")
        out: list[tuple[int, int, int]] = []
        for start in range(0, len(ids), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for task_id in ids[start : start + 1000]:
                pipe.hmget(keys.task(task_id), fields)
            for row in pipe.execute():
                with contextlib.suppress(TypeError, ValueError):
                    out.append((int(row[0]), int(row[1]), int(row[2])))
        return out

    def run(self) -> dict[str, Any]:
        opts = self.options
        payload = make_payload(opts.payload_size)
        name = self.register()
        self.cleanup()
        try:
            # Enqueue rates with no worker running, then the pool drains that backlog (as
            # the peer harness measures the other queues); idle latency comes last, warm.
            bulk_rate, ids = self.enqueue_bulk(name, payload)
            one_rate = self.enqueue_one(name, payload)
            ids = list(self.ids)
            self.start_pool()
            self.wait_done(len(self.ids), "process")
            rows = self.timings(ids)
            busy = max(r[2] for r in rows) - min(r[1] for r in rows) if rows else 0
            rate = len(rows) / (busy / 1000) if busy else 0.0
            loaded = self.loaded_latency(name, payload, rate / 2)
            idle = self.idle_latency(name, payload)
        finally:
            self.stop_pool()
            with contextlib.suppress(redis.RedisError):
                self.cleanup()
        failed = len(ids) - len(rows)
        busy_ms = max(r[2] for r in rows) - min(r[1] for r in rows) if rows else 0
        load = percentiles(loaded)
        idle_p = percentiles(idle)
        return {
            "tasks": opts.tasks,
            "workers": opts.workers,
            "cores": os.cpu_count() or 1,
            "module": (opts.module or default_module()).name,
            "payload_size": len(payload),
            "enqueue_rate": round(bulk_rate, 1),
            "enqueue_one_rate": round(one_rate, 1),
            "process_rate": round(len(rows) / (busy_ms / 1000), 1) if busy_ms else 0.0,
            "cost_per_task_us": round(busy_ms * 1000 * opts.workers / len(rows), 1)
            if rows and busy_ms
            else 0.0,
            "latency_p50_ms": idle_p["p50"],
            "latency_p90_ms": idle_p["p90"],
            "latency_p99_ms": idle_p["p99"],
            "load_latency_p50_ms": load["p50"],
            "load_latency_p90_ms": load["p90"],
            "load_latency_p99_ms": load["p99"],
            "incomplete": failed,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def run(settings: Settings, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    bench = Bench(settings, options, progress)
    try:
        return bench.run()
    finally:
        bench.client.close()
