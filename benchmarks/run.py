"""wasmq against the queues users would pick instead, on one machine, in one run.

Every system runs against the same private Valkey server (unix socket) and the same
trivial job: a small dict in, the same dict out, result stored. For each peer and each
repetition:

1. enqueue N jobs with the peer's many-at-once API (timed: "bulk"), then clear the server;
2. enqueue N jobs one call each (timed: "one by one"), with no worker running;
3. start the workers (2 processes) and time the drain: from the first job taken off the
   queue (so worker start-up is not counted) to the last result stored; the server's
   CPU time (``INFO cpu``) over the drain, divided by the jobs, is reported beside it;
4. stop the workers (whole process groups), check a few results, clear the server.

wasmq runs through ``wasmq bench --json`` against the same server. Medians of the
repetitions go to ``benchmarks/.results/<date>.json``, a table on stdout and a bar chart;
the report opens with wasmq's WAT echo as a ratio to the fastest peer (processing) and
to Huey (one-by-one enqueue), and the Go task_1 run from its snapshot as a ratio to the
same module run as built (``wasmq bench --no-snapshot``).

Usage: ``python benchmarks/run.py [--quick] [--tasks N] [--reps N] [--only huey,rq]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import procs
import redis
import report
import wasmq_side

from runtime.server import embedded

BENCH_DIR = Path(__file__).resolve().parent
PEERS = ("huey", "dramatiq", "celery", "rq", "arq", "saq")
POLL = 0.002
SAMPLE = 5
#: Newest jobs polled for their result until they are all stored (the queues are FIFO,
#: so they finish last); only then is every job checked. Polling every job's result key
#: each 2 ms would load the shared server the CPU column measures.
TAIL = 50


class BenchFailed(Exception):
    """One system could not finish a repetition; the others still run."""


def payloads(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": "bench", "values": [1, 2, 3], "ok": True} for i in range(n)]


def clear(client: redis.Redis) -> None:
    """FLUSHALL, keeping Kombu's exchange bindings: Celery's producer declares them once
    per process and would otherwise drop every later message as unroutable."""
    bindings = {key: client.dump(key) for key in client.keys("_kombu.binding.*")}
    client.flushall()
    for key, value in bindings.items():
        if value is not None:
            client.restore(key, 0, value)


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no worker output)"
    return " | ".join(text[-lines:]) or "(no worker output)"


def drain(
    peer: Any, client: redis.Redis, handles: list[Any], log: Path, timeout: float
) -> dict[str, float]:
    """Start the workers and time them through the backlog."""
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
    n = len(handles)
    peer.before_workers(client)
    spawned = time.perf_counter()
    groups = [procs.start(cmd, cwd=BENCH_DIR, env=env, log=log) for cmd in peer.worker_commands()]
    try:
        deadline = spawned + timeout

        def check() -> None:
            if time.perf_counter() > deadline:
                raise BenchFailed(f"drain took over {timeout:.0f}s; workers: {log_tail(log)}")
            if any(g.poll() is not None for g in groups):
                raise BenchFailed(f"a worker exited: {log_tail(log)}")

        while peer.depth(client) >= n:
            check()
            time.sleep(POLL)
        first = time.perf_counter()
        cpu0 = server_cpu_us(client)
        while peer.depth(client) > 0:
            check()
            time.sleep(POLL)
        while peer.unfinished(client, handles[-TAIL:]):
            check()
            time.sleep(POLL)
        last, cpu1 = time.perf_counter(), server_cpu_us(client)
        # Stragglers (a job retried, a worker that held an older one) extend the window.
        if remaining := peer.unfinished(client, handles):
            while remaining := peer.unfinished(client, remaining):
                check()
                time.sleep(POLL)
            last, cpu1 = time.perf_counter(), server_cpu_us(client)
    finally:
        for group in groups:
            procs.stop(group)
    return {
        "startup_s": first - spawned,
        "drain_s": last - first,
        "process_rate": n / (last - first),
        "server_cpu_per_task_us": (cpu1 - cpu0) / n,
    }


def server_cpu_us(client: redis.Redis) -> float:
    """CPU time the server process has used (user + system, all its threads), in µs."""
    info = client.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


def verify(peer: Any, handles: list[Any], jobs: list[dict[str, Any]]) -> None:
    step = max(1, len(handles) // SAMPLE)
    for i in range(0, len(handles), step):
        got = peer.result(handles[i])
        if got != jobs[i]:
            raise BenchFailed(f"job {i} returned {got!r}, expected {jobs[i]!r}")


def one_rep(peer: Any, client: redis.Redis, n: int, log: Path) -> dict[str, float]:
    jobs = payloads(n)
    clear(client)
    bulk_s, _ = timed(peer.enqueue_bulk, jobs)
    clear(client)
    one_s, handles = timed(peer.enqueue_one, jobs)
    if peer.depth(client) != n:
        raise BenchFailed(f"{peer.depth(client)} jobs queued after enqueueing {n}")
    timing = drain(peer, client, handles, log, timeout=max(120.0, n / 20))
    verify(peer, handles, jobs)
    del handles
    # Celery's AsyncResult.__del__ talks to the server: let it run while there is one.
    gc.collect()
    clear(client)
    return {"enqueue_bulk_rate": n / bulk_s, "enqueue_rate": n / one_s, **timing}


def run_peer(name: str, client: redis.Redis, n: int, reps: int, logs: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": "peer", "version": report.version_of(name), "runs": []}
    try:
        module = importlib.import_module(f"peers.{name}")
        peer = module.PEER()
    except Exception as exc:
        return {**entry, "error": f"could not load: {type(exc).__name__}: {exc}"}
    entry.update(workers=peer.workers, bulk_api=peer.bulk_api)
    try:
        for rep in range(reps):
            print(f"  {name}: repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)
            entry["runs"].append(one_rep(peer, client, n, logs / f"{name}.log"))
    except BenchFailed as exc:
        entry["error"] = str(exc)
    except Exception as exc:
        traceback.print_exc()
        entry["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        gc.collect()
        with contextlib.suppress(Exception):
            peer.close()
    entry["median"] = medians(entry["runs"])
    return entry


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    if not runs:
        return {}
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="jobs per repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per system")
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, 1 repetition")
    parser.add_argument("--only", default="", help="comma-separated systems (default: all)")
    parser.add_argument("--no-wasmq", action="store_true", help="peers only")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.reps = 1_000, 1
    args.only = [s for s in args.only.split(",") if s]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="wasmq-peers-"))
    results: dict[str, Any] = {}
    try:
        url = embedded.ensure_running(state / "server")
        os.environ["BENCH_REDIS_URL"] = url
        client = redis.Redis.from_url(url)
        logs = state / "logs"
        logs.mkdir()
        for name in PEERS:
            if args.only and name not in args.only:
                continue
            print(f"{name}: {args.tasks} jobs x {args.reps}", file=sys.stderr, flush=True)
            results[name] = run_peer(name, client, args.tasks, args.reps, logs)
        if not args.no_wasmq:
            results.update(
                wasmq_side.run_all(
                    url, args.tasks, args.reps, state, args.only, clear=lambda: clear(client)
                )
            )
        client.close()
    except KeyboardInterrupt:
        print("interrupted: workers stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            embedded.stop(state / "server")
        shutil.rmtree(state, ignore_errors=True)
    every_system = not args.only and not args.no_wasmq
    report.write(results, tasks=args.tasks, reps=args.reps, every_system=every_system)
    return 0


if __name__ == "__main__":
    sys.exit(main())
