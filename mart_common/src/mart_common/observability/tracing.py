"""W3C trace context and the tracer provider of each service.

Trace context always PROPAGATES; spans are only RECORDED when an exporter is configured (standard
``OTEL_TRACES_EXPORTER`` / ``OTEL_EXPORTER_ZIPKIN_ENDPOINT`` / ``OTEL_TRACES_SAMPLER`` variables). Without
one, a request or an event gets a non-recording span context (the caller's, or fresh random ids): no SDK
provider, no span processors, a few microseconds per request
(docs/adr/0040-traces-recorded-only-when-exported.md). With one, each service has its own
``TracerProvider`` whose resource names the service, because the Zipkin exporter takes a batch's
``localEndpoint.serviceName`` from its spans' resource (the embedded mode runs six services in one process).
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from mart_common.observability.logs import correlation_id_var, log_context_var

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from mart_common.messaging import Envelope

log = structlog.get_logger(__name__)

#: The tracing of the service whose request or event is being handled, only while spans are recorded (it
#: makes the producer span of an outbox event; unset on the cheap path).
recording_var: ContextVar[ServiceTracing | None] = ContextVar("mart_recording_tracing", default=None)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
EMPTY_CONTEXT = otel_context.Context()
getrandbits = random.getrandbits  # what the OTel SDK's RandomIdGenerator uses too


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


def fresh_context() -> SpanContext:
    """New random ids for a trace nobody records (not sampled: no span of it exists anywhere)."""
    trace_id = getrandbits(128) or 1
    return SpanContext(trace_id, getrandbits(64) or 1, is_remote=False, trace_flags=TraceFlags(0))


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
    tracing = recording_var.get()
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
        parent_ctx = EMPTY_CONTEXT
        if parent:
            parent_ctx = trace.set_span_in_context(NonRecordingSpan(parent), EMPTY_CONTEXT)
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
        recording_token = recording_var.set(tracing)
    else:
        span = NonRecordingSpan(parent or fresh_context())
        recording_token = None
    span_ctx = span.get_span_context()
    token = correlation_id_var.set(envelope.correlation_id or envelope.id)
    otel_token = otel_context.attach(trace.set_span_in_context(span, EMPTY_CONTEXT))
    bound: dict[str, Any] = {
        "correlation_id": envelope.correlation_id,
        "event_id": envelope.id,
        "event_type": envelope.type,
        "trace_id": f"{span_ctx.trace_id:032x}",
    }
    if service:
        bound["service"] = service
    log_token = log_context_var.set(bound)
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
        log_context_var.reset(log_token)
        otel_context.detach(otel_token)
        correlation_id_var.reset(token)
        if recording_token is not None:
            recording_var.reset(recording_token)
