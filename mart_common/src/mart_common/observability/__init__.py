"""Logs, trace context, traces and metrics: what makes one checkout followable across the six services.

A request's ``X-Request-ID`` (set by Kong's correlation-id plugin, or made here) becomes the correlation id;
it and the ``traceparent`` travel from the HTTP request into the outbox, onto the bus, and into the handler
that consumes the event, so one checkout can be followed across all six services in the logs (every line
carries ``trace_id``) and, when an exporter is configured, in Zipkin (docs/tracing.md).

- :mod:`.logs`: structured JSON logging, and the context every log line of a request or event carries
  (its correlation id, service, trace id).
- :mod:`.tracing`: W3C trace context (propagated always), the tracer provider of each service (spans
  recorded only when an exporter is configured), the producer and consumer spans of events.
- :mod:`.metrics`: the Prometheus HTTP metrics.
- :mod:`.middleware`: the one ASGI layer that sets all of the above up per request.
"""
