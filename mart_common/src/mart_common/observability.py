"""Structured JSON logging, correlation ids, W3C trace context and Prometheus metrics.

A request's ``X-Request-ID`` (set by Kong's correlation-id plugin, or made here) becomes the correlation id;
it and the ``traceparent`` travel from the HTTP request into the outbox, onto the bus, and into the handler
that consumes the event, so one checkout can be followed across all six services in the logs.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from mart_common.messaging import Envelope

_correlation_id: ContextVar[str | None] = ContextVar("mart_correlation_id", default=None)
_propagator = TraceContextTextMapPropagator()
_configured = False

if not isinstance(trace.get_tracer_provider(), TracerProvider):
    # Spans are created so trace ids propagate; exporters can be added by OTEL_* settings of the SDK.
    trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("online-mart")


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


def current_correlation_id() -> str | None:
    """The correlation id of the request or event being handled."""
    return _correlation_id.get()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if any."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def event_context(envelope: Envelope) -> Iterator[None]:
    """Handle an event inside its producer's trace and correlation id."""
    ctx = _propagator.extract({"traceparent": envelope.traceparent} if envelope.traceparent else {})
    token = _correlation_id.set(envelope.correlation_id or envelope.id)
    with (
        structlog.contextvars.bound_contextvars(
            correlation_id=envelope.correlation_id, event_id=envelope.id, event_type=envelope.type
        ),
        tracer.start_as_current_span(f"handle {envelope.type}", context=ctx),
    ):
        try:
            yield
        finally:
            _correlation_id.reset(token)


class RequestContextMiddleware:
    """Binds the correlation id and a server span to each request; echoes ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        # Only accept ids that look like ids (they end up in logs and headers).
        if len(request_id) > 128 or not request_id.replace("-", "").replace("#", "").isalnum():
            request_id = str(uuid.uuid4())
        ctx = _propagator.extract(headers)
        token = _correlation_id.set(request_id)

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            with (
                structlog.contextvars.bound_contextvars(correlation_id=request_id, service=self.service),
                tracer.start_as_current_span(
                    f"{scope.get('method', '')} {scope.get('path', '')}", context=ctx
                ),
            ):
                await self.app(scope, receive, _send)
        finally:
            _correlation_id.reset(token)


class BodySizeLimitMiddleware:
    """Answers 413 problem+json to request bodies over ``max_bytes`` without reading them whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from mart_common.problems import problem_response

        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await problem_response(413, f"Request bodies are limited to {self.max_bytes} bytes.")(
                        scope, receive, send
                    )
                    return
        has_length = any(k == b"content-length" for k, _ in scope.get("headers", []))
        if has_length or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
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
                await problem_response(413, f"Request bodies are limited to {self.max_bytes} bytes.")(
                    scope, receive, send
                )
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
