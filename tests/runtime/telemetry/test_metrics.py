"""Prometheus metrics against the real server: the dashboard's cluster gauges, and a worker
pool's exposition of what its worker processes ran (multiprocess mode, real sandbox)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from runtime.client import Client
from runtime.dashboard.app import create_app
from runtime.modules.registry import Registry
from runtime.queue.broker import Report
from runtime.queue.task import ErrorKind
from runtime.settings import Settings
from runtime.telemetry.metrics import MULTIPROC_ENV, MetricsError, SupervisorMetrics
from runtime.worker.heartbeats import Heartbeat, WorkerStats
from runtime.worker.pool import Pool
from tests.support.pools import client_for, register_spin

#: A task whose every attempt traps.
BOOM_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) (unreachable)))
"""


def families(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_dashboard_metrics_are_cluster_gauges(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    register_spin(settings, redis_client, tmp_path)
    client = Client(settings=settings, client=redis_client)
    for _ in range(2):
        client.enqueue("spin", b"a", queue="alpha")
    client.schedule("spin", b"later", delay="1h", queue="alpha")
    doomed = client.enqueue("spin", b"b", queue="beta", max_retries=0)
    claimed = client.broker.claim(["beta"], "test-worker", 1)
    assert [t.id for t in claimed] == [doomed.id]
    report = Report(claimed[0], ok=False, error="trapped", error_kind=ErrorKind.TRAP)
    assert client.broker.nack(report) == "failed"
    Heartbeat(redis_client, "host:1:beef", ["alpha"], WorkerStats(), 5.0).beat()

    response = TestClient(create_app(client)).get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    found = families(response.text)
    depth_type, depth = found["wasmq_queue_tasks"]
    assert depth_type == "gauge"
    by_label = values(depth, "wasmq_queue_tasks")
    for queue, stage, count in [
        ("alpha", "pending", 2),
        ("alpha", "scheduled", 1),
        ("alpha", "in_progress", 0),
        ("beta", "pending", 0),
        ("beta", "retrying", 0),
    ]:
        assert by_label[(("queue", queue), ("stage", stage))] == count, (queue, stage)
    assert values(found["wasmq_dead_letters"][1], "wasmq_dead_letters") == {
        (("queue", "alpha"),): 0,
        (("queue", "beta"),): 1,
        (("queue", "default"),): 0,
    }
    waits = values(found["wasmq_oldest_pending_seconds"][1], "wasmq_oldest_pending_seconds")
    assert 0 <= waits[(("queue", "alpha"),)] < 60
    assert waits[(("queue", "beta"),)] == 0
    assert found["wasmq_workers"] == ("gauge", [Sample("wasmq_workers", {}, 1.0)])


def test_metrics_port_in_use_is_one_line_and_leaves_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = SupervisorMetrics("127.0.0.1", port, processes=lambda: 0)
        with pytest.raises(MetricsError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.start()
    assert MULTIPROC_ENV not in os.environ
    assert not Path(metrics.directory).exists()


@pytest.mark.processes
def test_pool_serves_what_its_workers_ran(
    settings: Settings, redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    register_spin(settings, redis_client, tmp_path)
    (tmp_path / "boom.wat").write_text(BOOM_WAT)
    Registry(settings, redis_client).register(tmp_path / "boom.wat")
    client = client_for(redis_url, tmp_path, redis_client)
    for _ in range(3):
        client.enqueue("spin", b"hi", queue="metered")
    client.enqueue("boom", b"", queue="metered", max_retries=0)
    pool = Pool(
        settings,
        ["metered"],
        concurrency=2,
        scheduler=False,
        reaper=False,
        metrics=("127.0.0.1", 0),
    )
    assert pool.metrics is not None
    scraped: list[str] = []
    ended = threading.Event()

    def scrape_then_stop() -> None:
        # A pool stops on SIGTERM, the way its users stop it; scrape while it runs.
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and not ended.is_set():
                if pool.metrics is not None and pool.metrics.port:
                    url = f"http://127.0.0.1:{pool.metrics.port}/metrics"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        text = response.read().decode()
                    _, samples = families(text).get("wasmq_tasks", ("", []))
                    tasks = values(samples, "wasmq_tasks_total")
                    if sum(tasks.values()) >= 4:
                        scraped.append(text)
                        return
                time.sleep(0.05)
        finally:
            if not ended.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    scraper = threading.Thread(target=scrape_then_stop)
    scraper.start()
    try:
        assert pool.run() == 0
    finally:
        ended.set()
        scraper.join()
    assert scraped, "the pool's metrics never counted the 4 tasks"
    found = families(scraped[0])
    assert found["wasmq_tasks"][0] == "counter"
    assert values(found["wasmq_tasks"][1], "wasmq_tasks_total") == {
        (("outcome", "completed"), ("queue", "metered"), ("task", "spin")): 3,
        (("outcome", "failed"), ("queue", "metered"), ("task", "boom")): 1,
    }
    assert values(found["wasmq_task_failures"][1], "wasmq_task_failures_total") == {
        (("kind", "trap"), ("queue", "metered"), ("task", "boom")): 1,
    }
    duration_type, duration = found["wasmq_task_duration_seconds"]
    assert duration_type == "histogram"
    counts = values(duration, "wasmq_task_duration_seconds_count")
    assert counts == {
        (("queue", "metered"), ("task", "spin")): 3,
        (("queue", "metered"), ("task", "boom")): 1,
    }
    spin_inf = [
        s.value
        for s in duration
        if s.name == "wasmq_task_duration_seconds_bucket"
        and s.labels == {"queue": "metered", "task": "spin", "le": "+Inf"}
    ]
    assert spin_inf == [3]
    claims = values(found["wasmq_claim_duration_seconds"][1], "wasmq_claim_duration_seconds_count")
    assert claims[()] >= 2  # at least one claim per worker process
    assert found["wasmq_worker_processes"] == (
        "gauge",
        [Sample("wasmq_worker_processes", {}, 2.0)],
    )
    # The directory and the variable were the pool's alone.
    assert MULTIPROC_ENV not in os.environ
    assert not Path(pool.metrics.directory).exists()
