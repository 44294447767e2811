"""``wasmq bench``: enqueue, drain and time a batch of tasks against a real pool.

The workers run as ``wasmq worker`` subprocesses on a queue of their own (``bench``), so
what is measured is the real product: leases, atomic acks, capture, limits and stored
results all stay on. Phases, in order:

1. bulk enqueue rate (``N`` tasks in pipelined batches) and one-by-one enqueue rate (a
   sample of single calls), with no worker running, as the peer harness measures the
   other queues;
2. a pool of ``--workers`` processes starts and drains that backlog: the processing
   rate runs from the first ``started_ms`` to the last ``finished_ms`` (interpreter
   start-up is not counted). Over the drain the server's CPU time (``INFO cpu``), its
   busiest commands (``INFO commandstats``), the workers' CPU time and their claim
   calls are divided by the tasks;
3. latency under load: a steady stream at half that rate for about two seconds, from
   each task's ``enqueued_ms`` to its ``finished_ms``;
4. idle latency: one task at a time, timed from just before the enqueue to the
   ``task_done:<id>`` message, with that pool and then with pools of each of
   ``--idle-workers`` processes;
5. optionally (``--large``) a backlog of 1 MiB payloads, enqueued with no worker
   running and drained by a fresh pool, measured as in 2;
6. trickle: ``--trickle-rate`` tasks/s enqueued one at a time for ``--trickle-seconds``
   on a pool of ``--trickle-workers`` mostly idle processes: claim calls, server CPU
   and worker CPU per task.

The module is registered as ``wasmq register`` registers it: pre-initialized from a
snapshot when it exports ``_initialize`` (unless ``--no-snapshot``); the result's
``snapshot`` says how it ran. Every key of the bench queue and of its tasks is deleted
afterwards.

On a Redis Cluster the bench queue is one hash tag, so one master serves its tasks (what
one queue can do there, cluster client included); the server figures add up every
master's, as the registry and worker records may live on others.
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

from runtime.client import Client
from runtime.errors import WasmqError
from runtime.queue import keys
from runtime.queue.task import TERMINAL_STAGES, Stage
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
#: Heartbeat interval of the bench's pools (s): the claim counters are read from the
#: heartbeat records, so a short interval keeps the wait at each phase boundary short.
#: Its cost (one pipeline per worker per beat) is part of what the trickle measures.
HEARTBEAT = 0.2
#: Most ``INFO commandstats`` entries reported per phase.
TOP_COMMANDS = 6
#: Tasks of the newest end of a phase whose stage is read before it counts as drained:
#: the pending list is FIFO, so they finish last (older stragglers are caught by
#: :meth:`Bench.settle`, after the phase's CPU counters are read).
TAIL = 256
#: Seconds a pool has to stop on SIGTERM before it is killed.
STOP_GRACE = 10.0
#: Large-payload tasks per enqueue pipeline (8 MiB at the default size).
LARGE_CHUNK = 8


@dataclasses.dataclass
class BenchOptions:
    tasks: int = 10_000
    workers: int = 2
    module: Path | None = None
    payload_size: int = 64
    idle_samples: int = 200
    one_by_one: int = 1000
    #: Extra pool sizes whose idle latency is measured (the ``--workers`` pool's always is).
    idle_workers: tuple[int, ...] = (1, 2, 4)
    trickle_rate: float = 100.0
    #: 0 skips the trickle phase.
    trickle_seconds: float = 3.0
    trickle_workers: int = 4
    #: 0 skips the large-payload phase.
    large_tasks: int = 0
    large_size: int = 1024**2
    #: Register the module pre-initialized (the default) or as built (``--no-snapshot``).
    snapshot: bool = True


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


# -- CPU accounting --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerUsage:
    """The server's CPU time and per-command counters at one moment."""

    cpu_us: float | None
    #: command -> (calls, usec)
    commands: dict[str, tuple[int, int]]


def _infos(client: redis.Redis, section: str) -> list[dict[str, Any]]:
    """``INFO <section>`` of the server, or of every master of a Redis Cluster (the
    bench queue's keys are on one of them, the registry and worker records may be on
    others: the figures are the whole deployment's, as on one server)."""
    if keys.tagged():
        replies: dict[Any, Any] = client.info(section, target_nodes="primaries")  # type: ignore[call-arg]
        return [dict(reply) for reply in replies.values()]
    return [client.info(section)]


def server_usage(client: redis.Redis) -> ServerUsage:
    """``INFO cpu`` (user + system time of the whole server process, background threads
    included) and ``INFO commandstats``; None where a managed server hides them."""
    cpu: float | None = None
    commands: dict[str, tuple[int, int]] = {}
    with contextlib.suppress(redis.ResponseError):
        infos = _infos(client, "cpu")
        cpu = sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos) * 1e6
    with contextlib.suppress(redis.ResponseError):
        for info in _infos(client, "commandstats"):
            for name, stats in info.items():
                if name.startswith("cmdstat_") and isinstance(stats, dict):
                    calls, usec = commands.get(name[len("cmdstat_") :], (0, 0))
                    calls, usec = calls + int(stats["calls"]), usec + int(stats["usec"])
                    commands[name[len("cmdstat_") :]] = (calls, usec)
    return ServerUsage(cpu, commands)


def server_delta(before: ServerUsage, after: ServerUsage, tasks: int) -> dict[str, Any]:
    """Server CPU µs per task and the busiest commands of the interval.

    Commands a script or a MULTI/EXEC runs are counted both on their own line and
    inside the ``evalsha`` or ``exec`` time, so the entries overlap; nor do they add up
    to the CPU time, which also holds the I/O and event loop no command is charged for."""
    out: dict[str, Any] = {"server_cpu_per_task_us": None, "server_commands": []}
    if tasks <= 0:
        return out
    if before.cpu_us is not None and after.cpu_us is not None:
        out["server_cpu_per_task_us"] = round((after.cpu_us - before.cpu_us) / tasks, 1)
    rows: list[dict[str, Any]] = []
    for name, (calls, usec) in after.commands.items():
        calls0, usec0 = before.commands.get(name, (0, 0))
        d_calls, d_usec = calls - calls0, usec - usec0
        if d_calls <= 0 or name == "info":  # the bench's own reads of these counters
            continue
        rows.append(
            {
                "command": name,
                "calls_per_task": round(d_calls / tasks, 3),
                "per_call_us": round(d_usec / d_calls, 2),
                "per_task_us": round(d_usec / tasks, 2),
            }
        )
    rows.sort(key=lambda row: row["per_task_us"], reverse=True)
    out["server_commands"] = rows[:TOP_COMMANDS]
    return out


def _thread_cpu_ns(pid: str) -> int | None:
    """On-CPU time of a process's live threads, in ns (``schedstat``)."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def group_cpu(pgid: int) -> tuple[float, set[int]] | None:
    """CPU µs used so far by the processes of group ``pgid`` (the pool: supervisor,
    workers and any child they start), and their pids; None without ``/proc``.

    ``/proc/<pid>/stat`` counts in clock ticks (10 ms), too coarse for a few seconds of
    mostly idle workers, so each process's threads' ``schedstat`` (ns) is summed when
    the kernel has it; ``stat``'s ticks are the fallback."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total_us = 0.0
    pids: set[int] = set()
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            if int(fields[2]) != pgid:
                continue
            ticks = int(fields[11]) + int(fields[12])
        except (IndexError, ValueError):
            continue
        pids.add(int(pid))
        precise = _thread_cpu_ns(pid)
        total_us += precise / 1000 if precise else ticks * 1e6 / tick
    return total_us, pids


# -- the bench -------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """Timestamps (ms) of a task that completed."""

    enqueued: int
    started: int
    finished: int


class Bench:
    def __init__(self, settings: Settings, options: BenchOptions, progress: Progress) -> None:
        self.settings = dataclasses.replace(settings, queue=QUEUE)
        self.options = options
        self.progress = progress
        self.client = Client(settings=self.settings)
        self.redis = self.client.redis
        self.ids: list[str] = []
        self.pool: subprocess.Popen[bytes] | None = None
        self.pool_workers = 0
        self.pool_ids: list[str] = []
        #: How the module was registered: ``TaskRecord.snapshot`` as JSON, None when it
        #: has no ``_initialize`` (nothing to snapshot).
        self.snapshot: dict[str, Any] | None = None
        self.module_bytes = 0
        #: The registered task name (its name index holds only the bench's tasks).
        self.name = ""

    # -- set-up and tear-down ------------------------------------------------------------

    def register(self) -> str:
        from runtime.modules.registry import Registry

        module = self.options.module or default_module()
        if not module.is_file():
            raise WasmqError(f"--module {module} does not exist; pass a task source file")
        name = "bench_" + re.sub(r"[^A-Za-z0-9_.-]", "_", module.stem)
        done = Registry(self.settings, self.redis).register(
            module, name=name, snapshot=self.options.snapshot
        )
        # Workers load native code from the module dir; make sure it is there, as it is on
        # a machine that has run the task before, so the drain measures tasks, not compiles.
        Registry(self.settings, self.redis).load_module(done.record.digest)
        self.name = name
        info = done.record.snapshot
        self.snapshot = None if info is None else info.to_json()
        self.module_bytes = done.record.size
        return name

    def start_pool(self, workers: int) -> float:
        """Start ``workers`` worker processes and wait until each has sent its first
        heartbeat; returns that moment (Unix s)."""
        before = {m.decode() for m in self.redis.zrange(keys.WORKERS, 0, -1)}
        command = [sys.executable, "-c", "from runtime.cli import main; main()"]
        if self.settings.redis_url:
            command += ["--redis-url", self.settings.redis_url]
        command += ["--state-dir", str(self.settings.state_dir)]
        command += ["--module-dir", str(self.settings.module_dir), "--log-level", "warning"]
        command += ["worker", "-q", QUEUE]
        command += ["-c", str(workers), "--no-scheduler"]
        env = dict(os.environ, WASMQ_HEARTBEAT_INTERVAL=str(HEARTBEAT))
        # The timings are read back from the task records: none may be deleted early.
        env["WASMQ_COMPLETED_MAX"] = "0"
        self.pool = subprocess.Popen(command, env=env, start_new_session=True)
        self.pool_workers = workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.check_pool()
            now = {m.decode() for m in self.redis.zrange(keys.WORKERS, 0, -1)}
            if len(now - before) >= workers:
                self.pool_ids = sorted(now - before)
                return time.time()
            time.sleep(0.005)
        raise WasmqError("the worker pool did not start within 60 s; see its log above")

    def check_pool(self) -> None:
        if self.pool is not None and self.pool.poll() is not None:
            raise WasmqError(f"the bench's worker pool exited with {self.pool.returncode}")

    def stop_pool(self) -> None:
        if self.pool is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pool.pid, signal.SIGTERM)
        try:
            # Every task has ended by now: an idle pool stops within about a second.
            self.pool.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pool.pid, signal.SIGKILL)
            self.pool.wait()
        self.pool = None
        self.pool_workers = 0
        # A killed worker leaves its record behind; a stopped one has removed it already.
        if self.pool_ids:
            with contextlib.suppress(redis.RedisError):
                pipe = self.redis.pipeline(transaction=False)
                pipe.zrem(keys.WORKERS, *self.pool_ids)
                for worker_id in self.pool_ids:
                    pipe.delete(keys.worker(worker_id))
                pipe.execute()
        self.pool_ids = []

    def delete_tasks(self, ids: Sequence[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for task_id in chunk:
                # One command per task: its keys share a slot on a Redis Cluster, whose
                # pipelines only take several keys through execute_command.
                pipe.execute_command(
                    "UNLINK",
                    keys.task(task_id),
                    keys.result(task_id),
                    keys.logs(task_id),
                    keys.log_stream(task_id),
                    keys.payload(task_id),
                )
            pipe.zrem(keys.timeout(QUEUE), *chunk)
            pipe.zrem(keys.scheduled(QUEUE), *chunk)
            pipe.execute()

    def cleanup(self) -> None:
        self.delete_tasks(self.ids)
        pipe = self.redis.pipeline(transaction=False)
        gone = [keys.queue(QUEUE, part) for part in keys.STAGES]
        gone += [keys.wake(QUEUE), keys.throughput(QUEUE), keys.index_queue(QUEUE)]
        if keys.tagged():
            # The queue's own registry copy and name set (on one server both are shared).
            gone += [keys.registry_mirror(QUEUE), keys.queue_names(QUEUE)]
        pipe.execute_command("DEL", *gone)
        if self.name:
            pipe.delete(keys.index_name(self.name, QUEUE))
        pipe.srem(keys.QUEUES, QUEUE)
        pipe.execute()

    # -- waiting and reading back -------------------------------------------------------

    def stages(self, ids: Sequence[str]) -> list[str | None]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(keys.task(task_id), "task_stage")
        return [s.decode() if isinstance(s, bytes) else None for s in pipe.execute()]

    def stall_limit(self) -> float:
        """Seconds without any task ending after which a phase gives up: longer than
        one task may hold its lease, and than a retry's first backoff."""
        s = self.settings
        return s.task_timeout + s.lease_grace + s.retry_backoff + 30.0

    def wait_done(self, ids: Sequence[str], label: str) -> None:
        """Until the tasks of ``ids`` have left the queue and the newest of them ended.

        Polls list lengths, not each task, so the server's CPU time over a drain
        is the drain's; :meth:`settle` then makes sure of every task."""
        total = len(ids)
        last, moved = total + 1, time.monotonic()
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys.pending_lists(QUEUE):
                pipe.llen(key)
            pipe.llen(keys.processing(QUEUE))
            left = min(sum(int(n) for n in pipe.execute()), total)
            self.progress(label, total - left, total)
            if not left:
                break
            self.check_pool()
            if left != last:
                last, moved = left, time.monotonic()
            elif time.monotonic() - moved > self.stall_limit():
                raise WasmqError(
                    f"{label}: {left} of {total} tasks still queued, none taken or finished "
                    f"for {self.stall_limit():.0f} s"
                )
            time.sleep(0.02)
        # A task between its claim and its ack may be in neither list.
        self.settle(ids[-TAIL:])

    def settle(self, ids: Sequence[str]) -> None:
        """Until every task of ``ids`` ended (a retried one may still be waiting for its
        backoff); a missing record counts as ended and shows in the timings as incomplete."""
        waiting = list(ids)
        moved = time.monotonic()
        while waiting:
            stages = self.stages(waiting)
            still = [
                i for i, s in zip(waiting, stages, strict=True) if s and s not in TERMINAL_STAGES
            ]
            if not still:
                return
            if len(still) < len(waiting):
                moved = time.monotonic()
            elif time.monotonic() - moved > self.stall_limit():
                raise WasmqError(f"{len(still)} tasks did not finish (first: {still[0]})")
            waiting = still
            self.check_pool()
            time.sleep(0.01)

    def timings(self, ids: Sequence[str]) -> list[Row]:
        """Timestamps of the tasks of ``ids`` that completed."""
        fields = ("task_stage", "enqueued_ms", "started_ms", "finished_ms")
        out: list[Row] = []
        for start in range(0, len(ids), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for task_id in ids[start : start + 1000]:
                pipe.hmget(keys.task(task_id), fields)
            for row in pipe.execute():
                if row[0] != Stage.COMPLETED.encode():
                    continue
                with contextlib.suppress(TypeError, ValueError):
                    out.append(Row(int(row[1]), int(row[2]), int(row[3])))
        return out

    def claim_counts(self, since: float) -> tuple[int, int] | None:
        """Claim calls and empty claims summed over the pool's workers, from heartbeats
        sent after ``since`` (Unix s); None when the workers do not report them."""
        group = group_cpu(self.pool.pid) if self.pool is not None else None
        pids = group[1] if group is not None else None
        since_ms = since * 1000
        deadline = time.monotonic() + max(10 * HEARTBEAT, 3.0)
        while True:
            ids = [m.decode() for m in self.redis.zrange(keys.WORKERS, 0, -1)]
            pipe = self.redis.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(keys.worker(worker_id))
            records = []
            for raw in pipe.execute():
                h = {k.decode(): v.decode() for k, v in raw.items()}
                if h.get("queues") != QUEUE:
                    continue
                if pids is not None and int(h.get("pid") or 0) not in pids:
                    continue
                records.append(h)
            fresh = [h for h in records if float(h.get("heartbeat_ms") or 0) > since_ms]
            if len(fresh) >= self.pool_workers:
                if any("claims" not in h for h in fresh):
                    return None
                return (
                    sum(int(h["claims"]) for h in fresh),
                    sum(int(h.get("empty_claims") or 0) for h in fresh),
                )
            self.check_pool()
            if time.monotonic() > deadline:
                raise WasmqError("the bench's workers stopped sending heartbeats")
            time.sleep(HEARTBEAT / 4)

    @staticmethod
    def quiet() -> float:
        """A moment (Unix s) after the workers' last claims of a finished phase: a
        worker that acked its last task claims once more, finds nothing and sleeps.
        Counters read from heartbeats sent after it hold no claim of that phase's end."""
        time.sleep(0.05)
        return time.time()

    def pool_cpu_us(self) -> float | None:
        if self.pool is None:
            return None
        group = group_cpu(self.pool.pid)
        return group[0] if group is not None else None

    # -- phases --------------------------------------------------------------------------

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

    def enqueue_one(self, name: str, payload: bytes) -> tuple[float, list[str]]:
        tasks = [self.client.task(name, payload) for _ in range(self.options.one_by_one)]
        ids = [t.id for t in tasks]
        self.ids.extend(ids)
        t0 = time.perf_counter()
        for i, task in enumerate(tasks):
            self.client.submit(task)
            if i % 100 == 99:
                self.progress("enqueue one by one", i + 1, len(tasks))
        return len(tasks) / (time.perf_counter() - t0), ids

    def drain(self, ids: Sequence[str], label: str = "process") -> dict[str, Any]:
        """Start the ``--workers`` pool on the backlog and time it through."""
        server0 = server_usage(self.redis)
        registered = self.start_pool(self.options.workers)
        workers0 = self.pool_cpu_us()
        self.wait_done(ids, label)
        workers1 = self.pool_cpu_us()
        server1 = server_usage(self.redis)
        self.settle(ids)
        rows = self.timings(ids)
        busy_ms = max(r.finished for r in rows) - min(r.started for r in rows) if rows else 0
        out: dict[str, Any] = {
            "process_rate": round(len(rows) / (busy_ms / 1000), 1) if busy_ms else 0.0,
            "cost_per_task_us": round(busy_ms * 1000 * self.options.workers / len(rows), 1)
            if rows and busy_ms
            else 0.0,
            "incomplete": len(ids) - len(rows),
            **server_delta(server0, server1, len(ids)),
        }
        # The workers' counters start once all of them are up (interpreter start-up is
        # not a task's cost): divide by the tasks started from then on.
        after = sum(1 for r in rows if r.started >= registered * 1000)
        out["workers_cpu_per_task_us"] = (
            round((workers1 - workers0) / after, 1)
            if workers0 is not None and workers1 is not None and after
            else None
        )
        claims = self.claim_counts(self.quiet())
        out["claims_per_task"] = round(claims[0] / len(ids), 3) if claims and ids else None
        return out

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
            self.ids.extend(t.id for t in done)
            self.progress("steady load", len(ids), total)
        self.wait_done(ids, "drain steady load")
        self.settle(ids)
        return [float(r.finished - r.enqueued) for r in self.timings(ids)]

    def idle_latency(self, name: str, payload: bytes, label: str) -> list[float]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(keys.done_channel("*"))
        out: list[float] = []
        # Untimed first tasks, so that no sample pays a worker's first task (module
        # load, first instance): that is start-up, not idle latency.
        warm = 2 * self.pool_workers
        total = self.options.idle_samples + warm
        try:
            for i in range(total):
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
                if i >= warm:
                    out.append((time.perf_counter() - t0) * 1000)
                self.progress(label, i + 1, total)
                # Let the workers go back to sleep, as a real idle pool would be.
                time.sleep(0.002)
        finally:
            pubsub.close()
        return out

    def trickle(self, name: str, payload: bytes) -> dict[str, Any]:
        """A slow steady stream on a mostly idle pool: what each task costs when the
        workers wait for work most of the time (wake-ups, empty claims, heartbeats)."""
        opts = self.options
        total = max(int(opts.trickle_rate * opts.trickle_seconds), 1)
        claims0 = self.claim_counts(self.quiet())
        server0, workers0 = server_usage(self.redis), self.pool_cpu_us()
        ids: list[str] = []
        t0 = time.perf_counter()
        for i in range(total):
            delay = t0 + i / opts.trickle_rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            task = self.client.task(name, payload)
            ids.append(task.id)
            self.ids.append(task.id)
            self.client.submit(task)
            if i % 10 == 9:
                self.progress("trickle", i + 1, total)
        sent_s = time.perf_counter() - t0
        self.wait_done(ids, "trickle drain")
        self.settle(ids)
        claims1 = self.claim_counts(self.quiet())
        server1, workers1 = server_usage(self.redis), self.pool_cpu_us()
        rows = self.timings(ids)
        lat = percentiles([float(r.finished - r.enqueued) for r in rows])
        out: dict[str, Any] = {
            "workers": self.pool_workers,
            "tasks": total,
            "rate": round(total / sent_s, 1) if sent_s else 0.0,
            "incomplete": total - len(rows),
            "latency_p50_ms": lat["p50"],
            "latency_p99_ms": lat["p99"],
            "claims_per_task": None,
            "empty_claims_per_task": None,
            **server_delta(server0, server1, total),
        }
        if claims0 is not None and claims1 is not None:
            out["claims_per_task"] = round((claims1[0] - claims0[0]) / total, 3)
            out["empty_claims_per_task"] = round((claims1[1] - claims0[1]) / total, 3)
        workers = (
            round((workers1 - workers0) / total, 1)
            if workers0 is not None and workers1 is not None
            else None
        )
        out["workers_cpu_per_task_us"] = workers
        server = out["server_cpu_per_task_us"]
        out["cpu_per_task_us"] = (
            round(server + workers, 1) if server is not None and workers is not None else None
        )
        return out

    def large(self, name: str) -> dict[str, Any]:
        """A backlog of ``--large-size`` payloads, enqueued with no worker running and
        then drained by a fresh ``--workers`` pool, measured as the main drain is."""
        opts = self.options
        n = opts.large_tasks
        payload = make_payload(opts.large_size)
        self.stop_pool()
        ids: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, n, LARGE_CHUNK):
            count = min(LARGE_CHUNK, n - start)
            ids.extend(t.id for t in self.client.enqueue_many([(name, payload)] * count))
            self.progress("enqueue large", len(ids), n)
        enqueue_rate = n / (time.perf_counter() - t0)
        self.ids.extend(ids)
        drained = self.drain(ids, "process large")
        # Hundreds of MiB of results: not kept for the cleanup at the end.
        self.delete_tasks(ids)
        return {
            "payload_bytes": len(payload),
            "tasks": n,
            "enqueue_rate": round(enqueue_rate, 1),
            "process_rate": drained["process_rate"],
            "server_cpu_per_task_us": drained["server_cpu_per_task_us"],
            "workers_cpu_per_task_us": drained["workers_cpu_per_task_us"],
            "claims_per_task": drained["claims_per_task"],
            "incomplete": drained["incomplete"],
        }

    # -- the whole run --------------------------------------------------------------------

    def pool_plan(self) -> list[int]:
        """Pool sizes in the order they run: the ``--workers`` pool first, then the
        trickle's, then the other idle-latency sizes, each started once."""
        opts = self.options
        plan = [opts.workers]
        if opts.trickle_seconds > 0:
            plan.append(opts.trickle_workers)
        plan.extend(opts.idle_workers)
        return list(dict.fromkeys(plan))

    def run(self) -> dict[str, Any]:
        opts = self.options
        payload = make_payload(opts.payload_size)
        name = self.register()
        self.cleanup()
        idle: dict[str, dict[str, float]] = {}
        trickle: dict[str, Any] | None = None
        large: dict[str, Any] | None = None
        try:
            # Enqueue rates with no worker running, then the pool drains that backlog (as
            # the peer harness measures the other queues); idle latency comes last, warm.
            server0 = server_usage(self.redis)
            bulk_rate, bulk_ids = self.enqueue_bulk(name, payload)
            enqueue_server = server_delta(server0, server_usage(self.redis), len(bulk_ids))
            one_rate, one_ids = self.enqueue_one(name, payload)
            for index, count in enumerate(self.pool_plan()):
                if index == 0:
                    drained = self.drain(bulk_ids + one_ids)
                    loaded = self.loaded_latency(name, payload, drained["process_rate"] / 2)
                else:
                    self.stop_pool()
                    self.start_pool(count)
                # On a new pool this also warms the trickle's workers up.
                label = f"idle, {count} worker" + ("s" if count > 1 else "")
                lat = self.idle_latency(name, payload, label)
                idle[str(count)] = percentiles(lat)
                if index == 0 and opts.large_tasks:
                    large = self.large(name)
                if opts.trickle_seconds > 0 and count == opts.trickle_workers:
                    trickle = self.trickle(name, payload)
        finally:
            self.stop_pool()
            with contextlib.suppress(redis.RedisError):
                self.cleanup()
        load = percentiles(loaded)
        idle_p = idle[str(opts.workers)]
        return {
            "tasks": opts.tasks,
            "workers": opts.workers,
            "cores": os.cpu_count() or 1,
            "module": (opts.module or default_module()).name,
            "module_bytes": self.module_bytes,
            "snapshot": self.snapshot,
            "payload_bytes": len(payload),
            "enqueue_rate": round(bulk_rate, 1),
            "enqueue_one_rate": round(one_rate, 1),
            "enqueue_server_cpu_per_task_us": enqueue_server["server_cpu_per_task_us"],
            "process_rate": drained["process_rate"],
            "cost_per_task_us": drained["cost_per_task_us"],
            "server_cpu_per_task_us": drained["server_cpu_per_task_us"],
            "workers_cpu_per_task_us": drained["workers_cpu_per_task_us"],
            "claims_per_task": drained["claims_per_task"],
            "server_commands": drained["server_commands"],
            "latency_p50_ms": idle_p["p50"],
            "latency_p90_ms": idle_p["p90"],
            "latency_p99_ms": idle_p["p99"],
            "idle_latency": [
                {"workers": int(k), **{f"{q}_ms": v for q, v in idle[k].items()}}
                for k in sorted(idle, key=int)
            ],
            "load_latency_p50_ms": load["p50"],
            "load_latency_p90_ms": load["p90"],
            "load_latency_p99_ms": load["p99"],
            "trickle": trickle,
            "large": large,
            "incomplete": drained["incomplete"],
            "finished_ms": int(time.time() * 1000),
        }


def run(settings: Settings, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    bench = Bench(settings, options, progress)
    try:
        return bench.run()
    finally:
        bench.client.close()
