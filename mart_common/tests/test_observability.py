"""The per-request stack and the trace context (docs/tracing.md): ids propagate whether or not spans are
recorded, spans are recorded (with the right service and parent) only when an exporter is configured, and
the Prometheus HTTP metrics keep their names and labels."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mart_common.body_limit import BodySizeLimitMiddleware
from mart_common.messaging import Envelope
from mart_common.observability import logs
from mart_common.observability import tracing as traces
from mart_common.observability.logs import current_correlation_id
from mart_common.observability.metrics import HttpMetrics
from mart_common.observability.middleware import RequestContextMiddleware
from mart_common.observability.tracing import (
    ServiceTracing,
    current_trace_id,
    current_traceparent,
    event_context,
    parse_traceparent,
    producer_traceparent,
    tracing_for,
)
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, generate_latest

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def build_app(tracing: ServiceTracing, registry: CollectorRegistry | None = None) -> FastAPI:
    """A service-shaped app: the telemetry setting and the middlewares as create_service_app sets them."""
    app = FastAPI(telemetry=tracing.fastapi_telemetry())
    metrics = HttpMetrics(registry) if registry is not None else None

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        ctx = logs.merge_log_context(None, "info", {})  # what a log line gets
        return {
            "item": item_id,
            "traceparent": current_traceparent(),
            "trace_id": current_trace_id(),
            "event_traceparent": producer_traceparent("mart.orders.v1.OrderPlaced", "mart.orders.v1"),
            "correlation_id": current_correlation_id(),
            "recording": trace.get_current_span().is_recording(),
            "log_context": {k: ctx.get(k) for k in ("correlation_id", "service", "trace_id")},
        }

    @app.post("/upload")
    async def upload() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/metrics")
    async def metrics_endpoint() -> str:
        return generate_latest(registry).decode() if registry is not None else ""

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=100)
    app.add_middleware(RequestContextMiddleware, service=tracing.service, tracing=tracing, metrics=metrics)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def recording_tracing(service: str) -> tuple[ServiceTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = ServiceTracing(service, provider, exporters=("memory",))
    traces._tracings[service] = tracing  # what tracing_for() does when OTEL_TRACES_EXPORTER is set
    return tracing, exporter


def envelope(traceparent: str | None) -> Envelope:
    return Envelope.new(
        type="mart.orders.v1.OrderPlaced",
        source="order-service",
        topic="mart.orders.v1",
        key="order-1",
        payload=b"",
        correlation_id="corr-1",
        traceparent=traceparent,
    )


# --- without an exporter: propagate, record nothing ---------------------------------------------


async def test_a_request_without_traceparent_gets_a_trace_that_its_events_carry() -> None:
    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        r = await c.get("/items/1", headers={"X-Request-ID": "req-42"})
    body = r.json()
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-42"
    assert HEX32.match(body["trace_id"])
    assert body["recording"] is False  # no exporter: no span is recorded
    # the outbox envelope continues the request's trace (its consumers join it)
    assert body["event_traceparent"] == body["traceparent"]
    assert body["traceparent"].split("-")[1] == body["trace_id"]
    # the response names the trace (W3C traceresponse) and the log context carries it
    assert r.headers["traceresponse"].split("-")[1] == body["trace_id"]
    assert body["log_context"] == {
        "correlation_id": "req-42",
        "service": "svc-a",
        "trace_id": body["trace_id"],
    }
    assert body["correlation_id"] == "req-42"


async def test_each_request_without_traceparent_gets_its_own_trace() -> None:
    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        ids = {(await c.get("/items/1")).json()["trace_id"] for _ in range(5)}
    assert len(ids) == 5


async def test_an_incoming_traceparent_is_continued() -> None:
    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        body = (await c.get("/items/1", headers={"traceparent": TRACEPARENT})).json()
    assert body["trace_id"] == TRACE_ID
    assert body["event_traceparent"] == TRACEPARENT  # sampled flag kept for the next hop


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # version 00 has no suffix
    ],
)
async def test_an_invalid_traceparent_starts_a_new_trace(bad: str) -> None:
    assert parse_traceparent(bad) is None
    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        body = (await c.get("/items/1", headers={"traceparent": bad})).json()
    assert HEX32.match(body["trace_id"]) and body["trace_id"] != TRACE_ID


async def test_a_request_id_that_does_not_look_like_an_id_is_replaced() -> None:
    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        r = await c.get("/items/1", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert r.headers["x-request-id"] != "<script>alert(1)</script>"
    assert uuid.UUID(r.headers["x-request-id"])


async def test_an_event_continues_its_producers_trace_and_correlation_id() -> None:
    with event_context(envelope(TRACEPARENT), "svc-b"):
        assert current_trace_id() == TRACE_ID
        assert current_correlation_id() == "corr-1"
        line = logs.merge_log_context(None, "info", {"event": "x"})
        assert line["trace_id"] == TRACE_ID and line["event_type"] == "mart.orders.v1.OrderPlaced"
        assert line["service"] == "svc-b" and line["correlation_id"] == "corr-1"
        assert not trace.get_current_span().is_recording()
        # what the handler writes to its outbox continues the same trace
        assert producer_traceparent("mart.stock.v1.StockReserved", "mart.stock.v1").split("-")[1] == TRACE_ID
    assert current_trace_id() is None  # nothing leaks out of the handler's context
    assert logs.log_context() == {}
    with event_context(envelope(None), "svc-b"):
        assert HEX32.match(current_trace_id() or "")


async def test_the_body_limit_still_answers_413_problem_json() -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: a chunked body
        yield b"x" * 60
        yield b"x" * 60

    app = build_app(ServiceTracing("svc-a"))
    async with client(app) as c:
        r = await c.post("/upload", content=b"x" * 101)
        chunked = await c.post("/upload", content=chunks())
    for response in (r, chunked):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert "x-request-id" in response.headers


# --- metrics ----------------------------------------------------------------------------------------


async def test_http_metrics_are_labelled_by_route_template_method_and_status_class() -> None:
    registry = CollectorRegistry()
    app = build_app(ServiceTracing("svc-m"), registry)
    async with client(app) as c:
        for i in range(3):
            assert (await c.get(f"/items/{i}")).status_code == 200
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.post("/upload", content=b"{}")).status_code == 200
        text = (await c.get("/metrics")).json()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("http_requests_total", method="GET", status="2xx", handler="/items/{item_id}") == 3
    assert value("http_requests_total", method="GET", status="4xx", handler="none") == 1
    assert value("http_requests_total", method="POST", status="2xx", handler="/upload") == 1
    assert value("http_request_duration_seconds_count", method="GET", handler="/items/{item_id}") == 3
    assert value("http_request_size_bytes_sum", handler="/upload") == 2
    assert (value("http_response_size_bytes_sum", handler="/items/{item_id}") or 0) > 0
    assert value("http_request_duration_highr_seconds_count") == 5
    assert "/metrics" not in text  # the scrape itself is not counted


# --- with an exporter: spans recorded, per service, linked through events ---------------------------


async def test_recorded_spans_link_request_producer_and_consumer_across_services() -> None:
    order, order_spans = recording_tracing("order-svc-test")
    inventory, inventory_spans = recording_tracing("inventory-svc-test")
    app = build_app(order)
    async with client(app) as c:
        r = await c.get("/items/7", headers={"traceparent": TRACEPARENT})
    body = r.json()
    assert body["recording"] is True and body["trace_id"] == TRACE_ID
    (server,) = [s for s in order_spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    (producer,) = [s for s in order_spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert server.name == "GET /items/{item_id}"
    assert server.parent is not None and f"{server.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert producer.name == "send OrderPlaced"
    assert producer.attributes["messaging.destination.name"] == "mart.orders.v1"
    assert server.resource.attributes["service.name"] == "order-svc-test"
    # the event carries the producer span; the consuming service records its CONSUMER span under it
    assert body["event_traceparent"].split("-")[2] == f"{producer.context.span_id:016x}"
    with event_context(envelope(body["event_traceparent"]), "inventory-svc-test"):
        assert trace.get_current_span().is_recording()
    (consumer,) = inventory_spans.get_finished_spans()
    assert consumer.kind == SpanKind.CONSUMER and consumer.name == "handle OrderPlaced"
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == int(TRACE_ID, 16)
    assert consumer.resource.attributes["service.name"] == "inventory-svc-test"
    assert inventory.service == "inventory-svc-test"


async def test_a_failing_handler_marks_its_consumer_span_as_an_error() -> None:
    _, spans = recording_tracing("failing-svc-test")
    with pytest.raises(RuntimeError), event_context(envelope(TRACEPARENT), "failing-svc-test"):
        raise RuntimeError("boom")
    (consumer,) = spans.get_finished_spans()
    assert not consumer.status.is_ok
    assert consumer.events[0].name == "exception"


async def test_probes_are_not_traced() -> None:
    tracing, spans = recording_tracing("probe-svc-test")
    app = build_app(tracing)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"recording": trace.get_current_span().is_recording()}

    async with client(app) as c:
        r = await c.get("/health")
    assert r.status_code == 200 and r.json() == {"recording": False}
    assert HEX32.match(r.headers["traceresponse"].split("-")[1])
    assert spans.get_finished_spans() == ()


def test_exporters_come_from_the_standard_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    monkeypatch.setenv("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://127.0.0.1:1/api/v2/spans")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "one-name-for-the-whole-process")
    name = f"env-svc-{uuid.uuid4().hex[:6]}"
    tracing = tracing_for(name)
    try:
        assert tracing.recording and tracing.exporters == ("zipkin",)
        assert tracing.provider is not None
        # each service names itself (the embedded mode has six in one process)
        assert tracing.provider.resource.attributes["service.name"] == name
        assert tracing.fastapi_telemetry()["tracer_provider"] is tracing.provider
    finally:
        assert tracing.provider is not None
        tracing.provider.shutdown()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing_for(f"env-svc-{uuid.uuid4().hex[:6]}").recording
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    with pytest.raises(ValueError, match="otlp"):
        tracing_for(f"env-svc-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing_for(f"env-svc-{uuid.uuid4().hex[:6]}").recording
