"""Structured JSON logging, correlation ids, W3C trace context, traces and Prometheus metrics.

A request's ``X-Request-ID`` (set by Kong's correlation-id plugin, or made here) becomes the correlation id;
it and the ``traceparent`` travel from the HTTP request into the outbox, onto the bus, and into the handler
that consumes the event, so one checkout can be followed across all six services in the logs (every line
carries ``trace_id``) and, when an exporter is configured, in Zipkin (docs/tracing.md).

Trace context always PROPAGATES; spans are only RECORDED when an exporter is configured (standard
``OTEL_TRACES_EXPORTER`` / ``OTEL_EXPORTER_ZIPKIN_ENDPOINT`` / ``OTEL_TRACES_SAMPLER`` variables). Without
one, a request or an event gets a non-recording span context (the caller's, or fresh random ids): no SDK
provider, no span processors, a few microseconds per request
(docs/adr/0040-traces-recorded-only-when-exported.md).
With one, each service has its own ``TracerProvider`` whose resource names the service, because the Zipkin
exporter takes a batch's ``localEndpoint.serviceName`` from its spans' resource (the embedded mode runs six
services in one process).
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from mart_common.messaging import Envelope

log = structlog.get_logger(__name__)

_correlation_id: ContextVar[str | None] = ContextVar("mart_correlation_id", default=None)
# What every log line of the request or event being handled carries (correlation_id, service, trace_id, ...):
# one context variable set once per request, merged into each line by a processor (cheaper than binding
# three structlog context variables per request; structlog's own contextvars keep working beside it).
_log_context: ContextVar[dict[str, Any] | None] = ContextVar("mart_log_context", default=None)
# The tracing of the service whose request or event is being handled, only while spans are recorded
# (it makes the producer span of an outbox event; unset on the cheap path).
_recording: ContextVar[ServiceTracing | None] = ContextVar("mart_recording_tracing", default=None)
_configured = False

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_EMPTY = otel_context.Context()
_getrandbits = random.getrandbits  # what the OTel SDK's RandomIdGenerator uses too


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog (JSON lines on stdout) once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=getattr(logging, level.upper(), 20))
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            merge_log_context,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), 20)),
        cache_logger_on_first_use=True,
    )
    for noisy in ("aiokafka", "sqlalchemy.engine", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def merge_log_context(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the request's or event's context, under what the log call itself passes."""
    context = _log_context.get()
    if context:
        for key, value in context.items():
            event_dict.setdefault(key, value)
    return event_dict


def log_context() -> dict[str, Any]:
    """The fields :func:`merge_log_context` adds to log lines right now."""
    return dict(_log_context.get() or {})


def _request_id() -> str:
    # A version-4 UUID from the same generator as the trace ids: request ids are labels, not secrets, and
    # uuid4() costs a system call per request.
    n = (_getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- trace context ---------------------------------------------------------------------------------


def parse_traceparent(value: str | bytes | None) -> SpanContext | None:
    """A W3C ``traceparent`` as a remote span context; ``None`` when absent or invalid."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_hex, span_hex, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16)))


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _fresh_context() -> SpanContext:
    """New random ids for a trace nobody records (not sampled: no span of it exists anywhere)."""
    trace_id = _getrandbits(128) or 1
    return SpanContext(trace_id, _getrandbits(64) or 1, is_remote=False, trace_flags=TraceFlags(0))


def current_correlation_id() -> str | None:
    """The correlation id of the request or event being handled."""
    return _correlation_id.get()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if any."""
    ctx = trace.get_current_span().get_span_context()
    return format_traceparent(ctx) if ctx.is_valid else None


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits (what Zipkin's search box and the logs' ``trace_id`` show)."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def producer_traceparent(event_type: str, topic: str) -> str | None:
    """The ``traceparent`` an event written to the outbox now carries.

    While spans are recorded this is a PRODUCER span ``send <type>`` (a child of the request's or the
    handled event's span), so Zipkin shows which service sent the event that a consumer span handles;
    otherwise the current context, unchanged.
    """
    tracing = _recording.get()
    if tracing is None or tracing.tracer is None:
        return current_traceparent()
    span = tracing.tracer.start_span(
        f"send {event_type.rsplit('.', 1)[-1]}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.system": tracing.messaging_system,
            "mart.event_type": event_type,
        },
    )
    span.end()
    return format_traceparent(span.get_span_context())


# --- tracing per service -----------------------------------------------------------------------------


@dataclass
class ServiceTracing:
    """How one service traces: a recording SDK provider when an exporter is configured, else nothing."""

    service: str
    provider: TracerProvider | None = None
    exporters: tuple[str, ...] = ()
    messaging_system: str = "kafka"
    tracer: trace.Tracer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.provider is not None:
            self.tracer = self.provider.get_tracer("online-mart")

    @property
    def recording(self) -> bool:
        return self.tracer is not None

    def fastapi_telemetry(self) -> dict[str, Any]:
        """``FastAPI(telemetry=...)``: FastAPI's own SERVER span per request, on this service's provider,
        only when recording (no metrics or log signals: Prometheus and structlog do that)."""
        if self.provider is None:
            return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
        return {
            "tracer_provider": self.provider,
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _not_traced,
        }


def _not_traced(scope: Any) -> bool:
    """Probes (health, readiness, metrics scrapes) would bury the traces worth reading."""
    return str(scope.get("path", "")).endswith(("/health", "/ready", "/metrics"))


_tracings: dict[str, ServiceTracing] = {}
_tracings_lock = threading.Lock()


def _env_exporters() -> tuple[str, ...]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    names = [n for n in names if n and n != "none"]
    unsupported = [n for n in names if n not in ("zipkin", "console")]
    if unsupported:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={','.join(unsupported)} is not supported here: "
            "use zipkin, console or none (docs/tracing.md)"
        )
    return tuple(dict.fromkeys(names))


def tracing_for(service: str, messaging_system: str = "kafka") -> ServiceTracing:
    """The tracing of ``service`` (one per service and process, from the ``OTEL_*`` environment)."""
    with _tracings_lock:
        found = _tracings.get(service)
        if found is not None:
            return found
        exporters = _env_exporters()
        provider = _make_provider(service, exporters) if exporters else None
        found = _tracings[service] = ServiceTracing(
            service, provider, exporters=exporters, messaging_system=messaging_system
        )
        if provider is not None:
            log.info("tracing_enabled", service=service, exporters=list(exporters))
        return found


def _make_provider(service: str, exporters: tuple[str, ...]) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # The service names itself: OTEL_SERVICE_NAME (one value per process) cannot name the six services
    # of the embedded mode; OTEL_RESOURCE_ATTRIBUTES still adds its attributes. The sampler comes from
    # OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, always on).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    for name in exporters:
        exporter: SpanExporter
        if name == "zipkin":
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            exporter = ZipkinExporter()  # OTEL_EXPORTER_ZIPKIN_ENDPOINT, OTEL_EXPORTER_ZIPKIN_TIMEOUT
        else:
            exporter = ConsoleSpanExporter(service_name=service)
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* settings
    return provider


# --- events ------------------------------------------------------------------------------------------


@contextmanager
def event_context(envelope: Envelope, service: str | None = None) -> Iterator[None]:
    """Handle an event inside its producer's trace and correlation id.

    ``service``: the consuming service (its tracer records a CONSUMER span, child of the ``traceparent``
    the event carries, when spans are recorded). Logs ``event_handled`` when the handler returns, so the
    trace id is in the log of every service an event reached.
    """
    tracing = _tracings.get(service) if service else None
    parent = parse_traceparent(envelope.traceparent)
    if tracing is not None and tracing.tracer is not None:
        parent_ctx = trace.set_span_in_context(NonRecordingSpan(parent), _EMPTY) if parent else _EMPTY
        span: trace.Span = tracing.tracer.start_span(
            f"handle {envelope.type.rsplit('.', 1)[-1]}",
            context=parent_ctx,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.operation.type": "process",
                "messaging.system": tracing.messaging_system,
                "messaging.destination.name": envelope.topic,
                "messaging.consumer.group.name": tracing.service,
                "messaging.message.id": envelope.id,
                "mart.event_type": envelope.type,
            },
        )
        recording_token = _recording.set(tracing)
    else:
        span = NonRecordingSpan(parent or _fresh_context())
        recording_token = None
    span_ctx = span.get_span_context()
    token = _correlation_id.set(envelope.correlation_id or envelope.id)
    otel_token = otel_context.attach(trace.set_span_in_context(span, _EMPTY))
    bound: dict[str, Any] = {
        "correlation_id": envelope.correlation_id,
        "event_id": envelope.id,
        "event_type": envelope.type,
        "trace_id": f"{span_ctx.trace_id:032x}",
    }
    if service:
        bound["service"] = service
    log_token = _log_context.set(bound)
    try:
        yield
        log.info("event_handled", topic=envelope.topic)
    except BaseException as exc:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        span.end()
        _log_context.reset(log_token)
        otel_context.detach(otel_token)
        _correlation_id.reset(token)
        if recording_token is not None:
            _recording.reset(recording_token)


# --- HTTP --------------------------------------------------------------------------------------------


class HttpMetrics:
    """The Prometheus HTTP metrics (the names, labels and buckets prometheus-fastapi-instrumentator's
    default instrumentation had): ``handler`` is the matched route template (``none`` when no route
    matched), ``status`` the status class (``2xx``), ``/metrics`` itself is not counted.

    The route comes from the router's own match (``scope["route"]``), not a second matching per request.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ("method", "status", "handler"),
            registry=registry,
        )
        self.in_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. Only value of header is respected. "
            "Otherwise ignored. No percentile calculated. ",
            ("handler",),
            registry=registry,
        )
        self.out_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. Only value of header is respected. "
            "Otherwise ignored. No percentile calculated. ",
            ("handler",),
            registry=registry,
        )
        self.latency_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. "
            "Made for more accurate percentile calculations. ",
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5,
                     10, 30, 60, float("inf")),
            registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. "
            "Made to be only used if aggregation by handler is important. ",
            ("method", "handler"),
            buckets=(0.1, 0.5, 1, float("inf")),
            registry=registry,
        )
        # (method, status class, handler) -> the labelled children: .labels() costs a lock and a lookup
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    def observe(
        self, method: str, status: int, handler: str, request_bytes: int, response_bytes: int, seconds: float
    ) -> None:
        if "/metrics" in handler:
            return
        key = (method, f"{str(status)[0]}xx", handler)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.total.labels(*key),
                self.in_size.labels(handler),
                self.out_size.labels(handler),
                self.latency.labels(method, handler),
            )
        total, in_size, out_size, latency = children
        total.inc()
        in_size.observe(request_bytes)
        out_size.observe(response_bytes)
        self.latency_highr.observe(seconds)
        latency.observe(seconds)


def _valid_request_id(value: str) -> bool:
    # Only accept ids that look like ids (they end up in logs and headers).
    return len(value) <= 128 and value.replace("-", "").replace("#", "").isalnum()


class RequestContextMiddleware:
    """Per request, in one pure ASGI layer: the correlation id (``X-Request-ID``, echoed), the trace
    context (continued from ``traceparent`` or new; echoed as ``traceresponse``), the log context
    (``correlation_id``, ``service``, ``trace_id``) and the Prometheus HTTP metrics.

    While spans are recorded, FastAPI's own telemetry has already opened the SERVER span around this
    layer (``ServiceTracing.fastapi_telemetry``); otherwise the trace context is a non-recording span.
    """

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        tracing: ServiceTracing | None = None,
        metrics: HttpMetrics | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.tracing = tracing or ServiceTracing(service)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_request_id = traceparent = None
        request_bytes = 0
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                raw_request_id = v
            elif k == b"traceparent":
                traceparent = v
            elif k == b"content-length":
                request_bytes = int(v) if v.isdigit() else 0
        request_id = raw_request_id.decode("latin-1") if raw_request_id else ""
        if not request_id or not _valid_request_id(request_id):
            request_id = _request_id()

        span_ctx = None
        recording_token = None
        if self.tracing.recording:
            span_ctx = trace.get_current_span().get_span_context()  # FastAPI's SERVER span
            if span_ctx.is_valid:
                recording_token = _recording.set(self.tracing)
            else:
                span_ctx = None
        otel_token = None
        if span_ctx is None:
            span_ctx = parse_traceparent(traceparent) or _fresh_context()
            otel_token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_ctx)))
        trace_id = f"{span_ctx.trace_id:032x}"
        response_headers = (
            (b"x-request-id", request_id.encode()),
            (b"traceresponse", format_traceparent(span_ctx).encode()),
        )
        status = 500
        response_bytes = 0

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal status, response_bytes
                status = message["status"]
                headers = message.get("headers") or []
                for k, v in headers:
                    if k == b"content-length":
                        response_bytes = int(v) if v.isdigit() else 0
                message["headers"] = [*headers, *response_headers]
            await send(message)

        token = _correlation_id.set(request_id)
        log_token = _log_context.set(
            {"correlation_id": request_id, "service": self.service, "trace_id": trace_id}
        )
        try:
            await self.app(scope, receive, _send)
        finally:
            _log_context.reset(log_token)
            _correlation_id.reset(token)
            if otel_token is not None:
                otel_context.detach(otel_token)
            if recording_token is not None:
                _recording.reset(recording_token)
            if self.metrics is not None:
                route = scope.get("route")
                handler = getattr(route, "path", None) or "none"
                self.metrics.observe(
                    scope["method"],
                    status,
                    handler,
                    request_bytes,
                    response_bytes,
                    max(time.perf_counter() - started, 0.0),
                )


class BodySizeLimitMiddleware:
    """Answers 413 problem+json to request bodies over ``max_bytes`` without reading them whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mart_common.problems import problem_response

        await problem_response(413, f"Request bodies are limited to {self.max_bytes} bytes.")(
            scope, receive, send
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_length = False
        for k, v in scope["headers"]:
            if k == b"content-length":
                has_length = True
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._too_large(scope, receive, send)
                    return
        if has_length or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # A chunked body has no declared length: buffer it up to the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def _replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, _replay, send)
