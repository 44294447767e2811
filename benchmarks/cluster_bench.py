"""wasmq's queue on a Redis Cluster of 1 and 3 masters: throughput and server CPU per task.

A local cluster (``valkey-server --cluster-enabled yes``, no replicas) is started per
case; ``--queues`` queues are picked so that their hash tags spread evenly over the
masters. Tasks are enqueued in batches and claimed and acked through the broker as a
worker does (``--consumers`` threads, each serving every queue; no sandbox: the queue's
own cost is what is measured). Reported per case: tasks/s end to end, and for each
master the server CPU it spent per task (``INFO cpu`` used_cpu_user + used_cpu_sys
deltas over the tasks of the run). On a 2-core machine the throughput of 3 masters
cannot show scaling (the servers and the client share the cores); the CPU per task per
master is the figure that predicts it: with queues spread evenly, each master does
1/masters of the work, so a cluster on separate machines scales until the clients are
the bottleneck.

Usage: ``python benchmarks/cluster_bench.py [--tasks 6000] [--queues 6] [--consumers 2]
[--masters 1,3]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from runtime.queue import keys
from runtime.queue.broker import Broker, Report
from runtime.queue.slots import bump_generation, new_id
from runtime.queue.task import Task
from runtime.server.connection import connect
from runtime.settings import Settings

# The local cluster is the one the tests start; as a script, the repository root is not on
# the path (only benchmarks/ is).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.cluster import LocalCluster

TASK = "bench"
BATCH = 50


def spread_queues(cluster: LocalCluster, count: int) -> list[str]:
    """``count`` queue names, as many on each master as can be (round robin)."""
    masters = cluster.master_ports()
    each = -(-count // len(masters))
    by_master: dict[int, list[str]] = {port: [] for port in masters}
    i = 0
    while min(len(v) for v in by_master.values()) < each:
        name = f"bench{i}"
        i += 1
        home = by_master[cluster.master_of(keys.tag(name))]
        if len(home) < each:
            home.append(name)
    spread = [q for names in zip(*by_master.values(), strict=True) for q in names]
    return spread[:count]


def cpu(cluster: LocalCluster) -> dict[int, float]:
    out = {}
    for port in cluster.master_ports():
        info = redis_info(port)
        out[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


def redis_info(port: int) -> dict[str, object]:
    import redis

    client = redis.Redis(port=port)
    try:
        return dict(client.info("cpu"))
    finally:
        client.close()


def run_case(masters: int, tasks: int, queues: int, consumers: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="wasmq-cluster-bench-"))
    cluster = LocalCluster(root, masters=masters, replicas=0).start()
    try:
        settings = Settings.load({"redis_url": cluster.url}, environ={}, env_file=None)
        client = connect(settings)
        client.hset(keys.registry(), TASK, json.dumps({"digest": "0" * 64, "version": 1}))
        bump_generation(client)
        names = spread_queues(cluster, queues)
        broker = Broker(client, settings)
        before = cpu(cluster)
        start = time.perf_counter()
        work = [
            Task(id="", task_name=TASK, payload=b"x" * 100, queue=names[i % len(names)])
            for i in range(tasks)
        ]
        for task in work:
            task.id = new_id(task.queue)
        for first in range(0, tasks, 500):
            broker.enqueue_many(work[first : first + 500])
        done = [0]
        lock = threading.Lock()

        def consume() -> None:
            own = Broker(connect(settings), settings)
            while True:
                with lock:
                    if done[0] >= tasks:
                        return
                got = own.claim(names, f"bench-{threading.get_ident()}", BATCH)
                if got:
                    own.finish([Report(task=t, ok=True, result=b"ok") for t in got])  # type: ignore[arg-type]
                    with lock:
                        done[0] += len(got)

        threads = [threading.Thread(target=consume) for _ in range(consumers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        after = cpu(cluster)
        per_master = {
            str(port): round((after[port] - before[port]) / tasks * 1e6, 1) for port in after
        }
        return {
            "masters": masters,
            "queues": len(names),
            "tasks": tasks,
            "tasks_per_s": round(tasks / elapsed),
            "server_cpu_us_per_task_by_master": per_master,
            "server_cpu_us_per_task_total": round(sum(per_master.values()), 1),
        }
    finally:
        cluster.stop()
        keys.use_layout("reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--queues", type=int, default=6)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--masters", default="1,3")
    args = parser.parse_args()
    for masters in (int(m) for m in args.masters.split(",")):
        print(json.dumps(run_case(masters, args.tasks, args.queues, args.consumers)), flush=True)


if __name__ == "__main__":
    main()
