"""The Prometheus HTTP metrics, recorded by the request middleware
(docs/adr/0041-metrics-without-instrumentator.md)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary


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
