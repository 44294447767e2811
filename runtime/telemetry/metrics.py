"""Prometheus metrics: what workers did, and what the cluster holds now.

Two sources, two endpoints:

- :class:`MetricsObserver` counts what a worker process claims and runs. Worker processes
  are children of a pool's supervisor (:mod:`runtime.worker.pool`), so they use
  prometheus-client's multiprocess mode: :class:`SupervisorMetrics` points
  ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the children start (the mode is
  chosen when prometheus-client is first imported, so a child must inherit it), each child
  writes its samples to files there, and the supervisor's HTTP server merges them at each
  scrape. Counters of a child that died stay in its files, so totals never go back.
- :class:`ClusterCollector` reads queue depths and live workers from Redis at each scrape
  of the dashboard's ``/metrics``: gauges of shared state, the same whichever dashboard
  is scraped, so they are not summed across workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from runtime.errors import WasmqError
from runtime.logging_config import get_logger

if TYPE_CHECKING:
    from runtime.queue.broker import Report

log = get_logger("metrics")

#: Where the worker processes of a supervisor serving metrics write their samples.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Task durations run from a millisecond to the longest timeouts (s).
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    float("inf"),
)
#: A claim is one script call: normally well under 10 ms (s).
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, float("inf"))


class MetricsError(WasmqError):
    """The metrics endpoint cannot be served."""


class MetricsObserver:
    """A worker's :class:`runtime.worker.observers.TaskObserver` that counts into Prometheus
    metrics: in multiprocess mode, files of this process; otherwise ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Not the global registry by default: in multiprocess mode the files are the
        # output, and a second observer must not collide with the first's names.
        self.tasks = Counter(
            "wasmq_tasks",
            "Attempts that ended, by the stage they left their task in (outcome).",
            ["queue", "task", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "wasmq_task_duration_seconds",
            "Run time of each attempt in the sandbox.",
            ["queue", "task"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "wasmq_task_failures",
            "Attempts that failed, by error kind (timeout, trap, memory_limit, handler...).",
            ["queue", "task", "kind"],
            registry=registry,
        )
        self.claims = Histogram(
            "wasmq_claim_duration_seconds",
            "Round trip of each claim of a batch of tasks, empty ones included.",
            buckets=CLAIM_BUCKETS,
            registry=registry,
        )

    def claimed(self, queues: Sequence[str], count: int, seconds: float) -> None:
        self.claims.observe(seconds)

    def reported(self, report: Report, status: str) -> None:
        task = report.task
        self.tasks.labels(task.queue, task.task_name, status).inc()
        self.duration.labels(task.queue, task.task_name).observe(report.duration_ms / 1000)
        if report.error_kind:
            self.failures.labels(task.queue, task.task_name, str(report.error_kind)).inc()


class ProcessCount(Collector):
    """``wasmq_worker_processes``: the worker processes a supervisor runs now."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "wasmq_worker_processes",
            "Worker processes this supervisor runs now.",
            value=self._count(),
        )


def multiprocess_registry(path: str | Path, *extra: Collector) -> CollectorRegistry:
    """A registry merging the samples worker processes wrote to ``path``, plus ``extra``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    for collector in extra:
        registry.register(collector)
    return registry


def render_multiprocess(path: str | Path, *extra: Collector) -> bytes:
    """The text exposition of :func:`multiprocess_registry`."""
    return generate_latest(multiprocess_registry(path, *extra))


class SupervisorMetrics:
    """A pool supervisor's metrics endpoint: the directory its children write to and the
    HTTP server that merges it. :meth:`start` before the children spawn, :meth:`close`
    after they are gone."""

    def __init__(self, host: str, port: int, processes: Callable[[], int]) -> None:
        self.host = host
        self.port = port
        self.directory = ""
        self._processes = processes
        self._server: Any = None
        self._previous: str | None = None

    def start(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="wasmq-metrics-")
        self._previous = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = self.directory
        registry = multiprocess_registry(self.directory, ProcessCount(self._processes))
        try:
            self._server, _ = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            self.close()
            raise MetricsError(
                f"cannot serve metrics on {self.host}:{self.port} ({exc.strerror or exc});"
                " choose another --metrics-port or --metrics-host"
            ) from None
        # Port 0 asks the system for a free one.
        self.port = int(self._server.server_address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        log.info("serving metrics", url=f"http://{host}:{self.port}/metrics")

    def process_dead(self, pid: int) -> None:
        """Drop the live gauges of a worker process that exited (its counters stay)."""
        if self.directory:
            with contextlib.suppress(OSError):
                mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


#: ``wasmq_queue_tasks`` stages: where a queue's tasks wait or run (QueueStats fields).
QUEUE_STAGES = ("pending", "in_progress", "scheduled", "retrying", "cron")


class ClusterCollector(Collector):
    """Gauges of what Redis holds, read at each collect through a
    :class:`runtime.client.Client`: a few reads per queue, one per worker record."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def collect(self) -> Iterable[Metric]:
        report = self.client.stats_report()
        workers = self.client.workers()
        depth = GaugeMetricFamily(
            "wasmq_queue_tasks",
            "Tasks in each queue by stage; scheduled, retrying and cron are scaled from"
            " a sample when the scheduled set is large.",
            labels=["queue", "stage"],
        )
        oldest = GaugeMetricFamily(
            "wasmq_oldest_pending_seconds",
            "How long the oldest pending task of each queue has waited (0: none waits).",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "wasmq_dead_letters", "Tasks in each queue's dead-letter list.", labels=["queue"]
        )
        for row in report.queues:
            for stage in QUEUE_STAGES:
                depth.add_metric([row.queue, stage], getattr(row, stage))
            oldest.add_metric([row.queue], (row.oldest_pending_age_ms or 0) / 1000)
            dead.add_metric([row.queue], row.dlq)
        yield depth
        yield oldest
        yield dead
        yield GaugeMetricFamily(
            "wasmq_workers",
            "Worker processes whose heartbeat is recent, across every machine.",
            value=sum(1 for w in workers if w.alive),
        )


def render_cluster(client: Any) -> bytes:
    """The text exposition of :class:`ClusterCollector` over ``client``."""
    registry = CollectorRegistry()
    registry.register(ClusterCollector(client))
    return generate_latest(registry)
