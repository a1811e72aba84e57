"""The one ASGI layer every request goes through: request id, trace context, log context and metrics."""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mart_common.observability.logs import correlation_id_var, log_context_var
from mart_common.observability.metrics import HttpMetrics
from mart_common.observability.tracing import (
    ServiceTracing,
    format_traceparent,
    fresh_context,
    getrandbits,
    parse_traceparent,
    recording_var,
)


def _request_id() -> str:
    # A version-4 UUID from the same generator as the trace ids: request ids are labels, not secrets, and
    # uuid4() costs a system call per request.
    n = (getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
                recording_token = recording_var.set(self.tracing)
            else:
                span_ctx = None
        otel_token = None
        if span_ctx is None:
            span_ctx = parse_traceparent(traceparent) or fresh_context()
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

        token = correlation_id_var.set(request_id)
        log_token = log_context_var.set(
            {"correlation_id": request_id, "service": self.service, "trace_id": trace_id}
        )
        try:
            await self.app(scope, receive, _send)
        finally:
            log_context_var.reset(log_token)
            correlation_id_var.reset(token)
            if otel_token is not None:
                otel_context.detach(otel_token)
            if recording_token is not None:
                recording_var.reset(recording_token)
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
