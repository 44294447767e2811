"""OpenTelemetry spans: one per enqueue (producer) and one per attempt (consumer).

The W3C trace context of the enqueue span (what the global propagator writes:
``traceparent``, ``tracestate``) travels with the task in its record's ``trace_context``
field, so each attempt's span, recorded by the worker that ran it, is a child of the
span that enqueued it, across processes and machines.

- Producer side (:func:`enqueue_spans`, around every enqueue of :class:`runtime.client.Client`):
  it follows the application's global TracerProvider. Without the extra an enqueue pays one
  dictionary lookup, and without a provider the application set (and no enclosing span) a
  few attribute reads; neither stores anything.
- Consumer side (:class:`TracingObserver`, a worker observer): a worker process builds its
  own SDK provider when ``WASMQ_OTEL`` asks for one (:func:`tracing_observers`). Spans are
  created after the fact, when the attempt is acked, with the attempt's own start time and
  duration, so tracing adds nothing to the time a task runs.

The ``otel`` extra (``pip install 'wasmq[otel]'``) brings the packages; nothing here
imports them until tracing is in use.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing.util
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runtime.errors import SettingsError
from runtime.logging_config import get_logger
from runtime.queue.task import ErrorKind, Kind, Stage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from runtime.queue.broker import Report
    from runtime.queue.task import Task
    from runtime.settings import Settings
    from runtime.worker.observers import TaskObserver

log = get_logger("tracing")

#: Values of ``WASMQ_OTEL``.
EXPORTERS = ("off", "otlp", "console")
#: The instrumentation scope of every span, and the ``messaging.system`` attribute.
SCOPE = "wasmq"
#: ``service.name`` of a worker's spans when ``OTEL_SERVICE_NAME`` does not name one.
WORKER_SERVICE = "wasmq-worker"
#: Longest error message kept as a span's status description.
ERROR_TEXT = 1000

_MODULES = {
    "console": ("opentelemetry.sdk.trace",),
    "otlp": ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"),
}


def missing_extra(exporter: str) -> str | None:
    """Why ``exporter`` cannot run here (the ``otel`` extra is not installed), or None."""
    for name in _MODULES.get(exporter, ()):
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return (
                f"the OpenTelemetry packages are not installed ({name} is missing); "
                "pip install 'wasmq[otel]' or unset WASMQ_OTEL"
            )
    return None


# -- the trace context stored with a task ---------------------------------------------------


def pack(carrier: dict[str, str]) -> str:
    """The ``trace_context`` field of a propagator's carrier: the bare ``traceparent`` when
    that is all there is (the common case), else a JSON object of every field."""
    if not carrier:
        return ""
    if list(carrier) == ["traceparent"]:
        return carrier["traceparent"]
    return json.dumps(carrier, separators=(",", ":"), sort_keys=True)


def unpack(text: str) -> dict[str, str]:
    """The carrier :func:`pack` stored; a damaged field gives an empty one (a new trace)."""
    if not text.startswith("{"):
        return {"traceparent": text} if text else {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


# -- producer side ---------------------------------------------------------------------------


@contextmanager
def enqueue_spans(tasks: Sequence[Task]) -> Iterator[None]:
    """Around an enqueue of ``tasks``: a producer span each, whose context is stored in the
    task's ``trace_context`` (a task that already carries one keeps it). A single task's
    span is the current one meanwhile, so instrumented Redis calls nest under it."""
    if "opentelemetry.trace" not in sys.modules:
        # No TracerProvider can have been set without importing OpenTelemetry.
        yield
        return
    from opentelemetry import context, trace

    if _inert(trace):
        yield
        return
    spans = _producer_spans(tasks)
    token = context.attach(trace.set_span_in_context(spans[0])) if len(spans) == 1 else None
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:ERROR_TEXT])
        raise
    finally:
        if token is not None:
            context.detach(token)
        for span in spans:
            span.end()


def _inert(trace: Any) -> bool:
    """No provider was set and no span encloses the call: spans would record nothing."""
    provider = trace.get_tracer_provider()
    return isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) and (
        not trace.get_current_span().get_span_context().is_valid
    )


def _producer_spans(tasks: Sequence[Task]) -> list[Span]:
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(SCOPE, _version())
    spans: list[Span] = []
    for task in tasks:
        span = tracer.start_span(
            f"send {task.queue}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                **_messaging(task, "send"),
                "wasmq.task.kind": Kind(task.kind).name.lower(),
            },
        )
        if not span.get_span_context().is_valid:
            # No SDK provider and no enclosing span: nothing to record or to pass on.
            continue
        spans.append(span)
        if not task.trace_context:
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            task.trace_context = pack(carrier)
    return spans


def _messaging(task: Task, operation: str) -> dict[str, str]:
    return {
        "messaging.system": SCOPE,
        "messaging.operation.type": operation,
        "messaging.destination.name": task.queue,
        "messaging.message.id": task.id,
        "wasmq.task.name": task.task_name,
        "wasmq.task.id": task.id,
    }


# -- consumer side ---------------------------------------------------------------------------


class TracingObserver:
    """A consumer span per ended attempt, child of the span that enqueued the task (a root
    span when the task carries no context: cron runs, producers without tracing)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import trace

        self._tracer = trace.get_tracer(SCOPE, _version(), tracer_provider=tracer_provider)
        self._warned = False

    def claimed(self, queues: Sequence[str], count: int, seconds: float) -> None:
        return None

    def reported(self, report: Report, status: str) -> None:
        try:
            self._record(report, status)
        except Exception as exc:  # a span is never worth a worker
            if not self._warned:
                self._warned = True
                log.warning("could not record a span; later failures are not logged", error=exc)

    def _record(self, report: Report, status: str) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.context import Context

        task = report.task
        # An explicit empty context: never the worker thread's own.
        parent = propagate.extract(unpack(task.trace_context), context=Context())
        duration_ns = int(report.duration_ms * 1_000_000)
        start_ns = report.started_ms * 1_000_000 or time.time_ns() - duration_ns
        attributes: dict[str, str | int | float] = {
            **_messaging(task, "process"),
            "wasmq.task.attempt": task.attempts,
            "wasmq.task.outcome": status,
            "wasmq.task.duration_ms": report.duration_ms,
        }
        for key, value in (
            ("wasmq.task.version", task.version),
            ("wasmq.worker.id", task.worker),
            ("wasmq.cron.id", task.cron_id),
            ("wasmq.error.kind", str(report.error_kind)),
            ("error.type", str(report.error_kind)),
        ):
            if value:
                attributes[key] = value
        span = self._tracer.start_span(
            f"process {task.queue}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            start_time=start_ns,
        )
        failed = not report.ok and report.error_kind != ErrorKind.CANCELLED
        if failed and status in (Stage.FAILED, Stage.RETRYING):
            span.set_status(trace.StatusCode.ERROR, report.error[:ERROR_TEXT])
        span.end(end_time=start_ns + duration_ns)


def tracing_observers(settings: Settings) -> list[TaskObserver]:
    """A :class:`TracingObserver` on a provider of its own when ``WASMQ_OTEL`` asks."""
    if settings.otel == "off":
        return []
    return [TracingObserver(worker_provider(settings.otel))]


def worker_provider(exporter: str) -> TracerProvider:
    """An SDK provider exporting to ``exporter`` (``otlp``: OTLP/HTTP configured by the
    standard ``OTEL_EXPORTER_OTLP_*`` variables; ``console``: JSON on stdout)."""
    problem = missing_extra(exporter)
    if problem is not None:
        raise SettingsError(f"invalid WASMQ_OTEL={exporter!r}: {problem}")
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: WORKER_SERVICE}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    # Worker processes end through multiprocessing, which skips atexit but runs its own
    # finalizers: the spans still batched are sent then.
    multiprocessing.util.Finalize(None, provider.shutdown, exitpriority=10)
    return provider


def _version() -> str:
    from wasmq import __version__

    return __version__
