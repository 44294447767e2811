"""OpenTelemetry spans: a producer span per enqueue, whose context travels in the task's
record, and a consumer span per attempt in the same trace.

A real client enqueues, a real worker loop runs ``guest_abi.wat`` in the real sandbox; the
spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator

import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from runtime.client import Client
from runtime.errors import SettingsError
from runtime.modules.registry import Registry
from runtime.settings import Settings
from runtime.telemetry import worker_observers
from runtime.telemetry.tracing import TracingObserver, pack, unpack
from runtime.worker.loop import Worker
from tests.support.paths import WAT


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK provider as the global one for the test only.

    The API lets a process set its provider once; resetting it afterwards (as
    OpenTelemetry's own test utilities do) keeps the other tests' enqueues untraced."""
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(sdk)
    try:
        yield sdk, exporter
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
        sdk.shutdown()


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Iterator[Client]:
    Registry(settings, redis_client).register(WAT / "guest_abi.wat", name="guest")
    with Client(settings=settings) as c:
        yield c


def _one(spans: list[ReadableSpan], name: str, task_id: str) -> ReadableSpan:
    found = [
        s for s in spans if s.name == name and (s.attributes or {}).get("wasmq.task.id") == task_id
    ]
    assert len(found) == 1, [(s.name, s.attributes) for s in spans]
    return found[0]


def test_an_attempt_is_a_child_of_its_enqueue_in_one_trace(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    client: Client,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    sdk, exporter = provider
    ok = client.enqueue("guest", b"o", queue="traced")
    (bad,) = client.enqueue_many([("guest", b"t")], queue="traced", max_retries=0)

    enqueued = exporter.get_finished_spans()
    for task in (ok, bad):
        span = _one(list(enqueued), "send traced", task.id)
        assert span.kind == SpanKind.PRODUCER
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "wasmq"
        assert span.attributes["messaging.destination.name"] == "traced"
        assert span.attributes["wasmq.task.name"] == "guest"
        stored = redis_client.hget(f"task_metadata:{task.id}", "trace_context")
        assert stored is not None
        context = span.context
        assert unpack(stored.decode()) == {
            "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}"
            f"-{int(context.trace_flags):02x}"
        }

    worker = Worker(
        settings,
        ["traced"],
        burst=True,
        client=redis_client,
        observers=[TracingObserver(sdk)],
    )
    worker.run(threading.Event())
    assert client.status(ok.id).stage == "completed"
    assert client.status(bad.id).stage == "failed"

    spans = list(exporter.get_finished_spans())
    for task, outcome in ((ok, "completed"), (bad, "failed")):
        producer = _one(spans, "send traced", task.id)
        consumer = _one(spans, "process traced", task.id)
        assert consumer.kind == SpanKind.CONSUMER
        assert consumer.context.trace_id == producer.context.trace_id
        assert consumer.parent is not None
        assert consumer.parent.span_id == producer.context.span_id
        attributes = dict(consumer.attributes or {})
        assert attributes["messaging.destination.name"] == "traced"
        assert attributes["wasmq.task.attempt"] == 1
        assert attributes["wasmq.task.outcome"] == outcome
        assert isinstance(attributes["wasmq.task.duration_ms"], float)
        assert consumer.start_time is not None and consumer.end_time is not None
        assert consumer.start_time >= producer.start_time
        assert consumer.end_time - consumer.start_time == pytest.approx(
            attributes["wasmq.task.duration_ms"] * 1e6, abs=1
        )
    failed = _one(spans, "process traced", bad.id)
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "bad input"
    assert (failed.attributes or {})["wasmq.error.kind"] == "handler"
    assert _one(spans, "process traced", ok.id).status.status_code == StatusCode.UNSET


def test_without_a_provider_nothing_is_stored(client: Client, redis_client: redis.Redis) -> None:
    task = client.enqueue("guest", b"o")
    assert redis_client.hget(f"task_metadata:{task.id}", "trace_context") is None


def test_wasmq_otel_adds_the_observer_and_names_a_missing_extra(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not any(isinstance(o, TracingObserver) for o in worker_observers(settings))
    on = dataclasses.replace(settings, otel="console")
    assert any(isinstance(o, TracingObserver) for o in worker_observers(on))
    assert Settings.load(environ={"WASMQ_OTEL": "OTLP"}, env_file=None).otel == "otlp"
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={"WASMQ_OTEL": "otlp"}, env_file=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid WASMQ_OTEL='otlp': the OpenTelemetry packages")
    assert "pip install 'wasmq[otel]'" in message


def test_the_stored_context_is_compact_and_damage_starts_a_new_trace() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert pack({"traceparent": parent}) == parent
    both = {"traceparent": parent, "tracestate": "congo=t61rcWkgMzE"}
    assert unpack(pack(both)) == both
    assert unpack("") == {} and unpack("{not json") == {} and unpack('{"traceparent":1}') == {}
