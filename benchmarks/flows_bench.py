"""Flows at scale: a chord of many members (10,000 by default) run by a worker pool.

Reports how long making the chord takes (one script call writes and queues every member
and keeps the callback's fields), how long the pool takes to run the members, and the
latency from the last member's completion (the ack that counts it creates the callback
with the JSON array of every result) to the callback's completion: ``members_done_ms``
and ``finished_ms`` of the flow hash, both written by the server's scripts. A chain of
``--chain`` steps gives the hop from one step's completion to the next one's.

Usage: ``python benchmarks/flows_bench.py [--members 10000] [--workers 2] [--chain 50]
[--redis-url URL] [--json]``; without a URL it starts a private embedded server. The
members and the callback are the WAT echo (``tasks/echo.wat``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import procs
import redis

from runtime.client import Client
from runtime.queue import keys
from runtime.server import embedded
from runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "tasks" / "echo.wat"


def wait_until(check: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SystemExit(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.01)


def flow_field(client: redis.Redis, flow_id: str, name: str) -> int | None:
    raw = client.hget(keys.flow(flow_id), name)
    return int(raw) if isinstance(raw, bytes) else None


def measure(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    settings = Settings.load(
        {"redis_url": url, "module_dir": work / "modules"}, environ={}, env_file=None
    )
    client = Client(settings=settings)
    client.redis.flushall()
    client.register(ECHO)
    env = dict(os.environ, REDIS_URL=url, WASMQ_MODULE_DIR=str(work / "modules"))
    env["WASMQ_STATE_DIR"] = str(work / "state")
    log = work / "workers.log"
    command = [sys.executable, "-c", "from runtime.cli import main; main()", "worker"]
    pool = procs.start([*command, "-c", str(args.workers)], cwd=work, env=env, log=log)
    try:
        wait_until(
            lambda: client.redis.zcard(keys.idle(keys.DEFAULT_QUEUE)) >= args.workers,
            120,
            "idle workers",
            log,
        )
        members = [("echo", {"i": i}) for i in range(args.members)]
        started = time.perf_counter()
        flow = client.chord(members, "echo")
        enqueue_s = time.perf_counter() - started
        assert flow.callback_id is not None
        result = client.result(flow.callback_id, wait=True, timeout=args.timeout)
        drained_s = time.perf_counter() - started
        assert len(json.loads(result)) == args.members
        wait_until(
            lambda: flow_field(client.redis, flow.id, "finished_ms") is not None,
            30,
            "the flow to end",
            log,
        )
        done_ms = flow_field(client.redis, flow.id, "members_done_ms") or 0
        finished_ms = flow_field(client.redis, flow.id, "finished_ms") or 0
        hops = chain_hops(client, args.chain, args.timeout, log) if args.chain > 1 else []
    finally:
        procs.stop(pool)
        client.close()
    return {
        "members": args.members,
        "workers": args.workers,
        "enqueue_ms": round(enqueue_s * 1000, 1),
        "enqueue_rate": round(args.members / enqueue_s),
        "members_and_callback_ms": round(drained_s * 1000, 1),
        "callback_latency_ms": finished_ms - done_ms,
        "chain_steps": args.chain,
        "chain_hop_median_ms": statistics.median(hops) if hops else None,
    }


def chain_hops(client: Client, steps: int, timeout: float, log: Path) -> list[float]:
    """Per hop of a chain: the next step's start minus the previous step's end (ms)."""
    flow = client.chain(*[("echo", {"s": 0})] + ["echo"] * (steps - 1))
    client.result(flow.member_ids[-1], wait=True, timeout=timeout)
    pipe = client.redis.pipeline(transaction=False)
    for task_id in flow.member_ids:
        pipe.hmget(keys.task(task_id), "started_ms", "finished_ms")
    rows = [(int(s), int(f)) for s, f in pipe.execute()]
    return [float(rows[i + 1][0] - rows[i][1]) for i in range(len(rows) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chain", type=int, default=50, help="Chain steps (0: none).")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wasmq-flows-bench-"))
    try:
        url = args.redis_url or embedded.ensure_running(work / "server")
        try:
            report = measure(args, url, work)
        finally:
            if not args.redis_url:
                embedded.stop(work / "server")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:<26} {value}")


if __name__ == "__main__":
    main()
