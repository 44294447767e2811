"""What a worker tells the telemetry around it: each claim and each ended attempt.

Observers (Prometheus metrics, OpenTelemetry spans: :mod:`runtime.telemetry`) are called
on the worker's own thread, after the Redis round trip they describe, so they must be
cheap and must not raise; a worker without observers pays one empty loop per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runtime.queue.broker import Report


class TaskObserver(Protocol):
    def claimed(self, queues: Sequence[str], count: int, seconds: float) -> None:
        """A claim on ``queues`` took ``count`` tasks in ``seconds`` (count 0: empty)."""
        ...

    def reported(self, report: Report, status: str) -> None:
        """An attempt ended and was acked or nacked: ``status`` is the stage it left its
        task in (completed, retrying, failed, cancelled) or why not (duplicate, missing)."""
        ...
