"""Telemetry: Prometheus metrics (:mod:`.metrics`) and OpenTelemetry spans (:mod:`.tracing`).

:func:`worker_observers` gives each worker process the observers its settings ask for;
none at all by default, so a worker without telemetry pays nothing for it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runtime.telemetry.tracing import tracing_observers

if TYPE_CHECKING:
    from runtime.settings import Settings
    from runtime.worker.observers import TaskObserver


def worker_observers(settings: Settings) -> list[TaskObserver]:
    """The observers a worker process built from ``settings`` reports to."""
    observers: list[TaskObserver] = []
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # set by a supervisor serving metrics
        from runtime.telemetry.metrics import MetricsObserver

        observers.append(MetricsObserver())
    observers += tracing_observers(settings)  # WASMQ_OTEL
    return observers
