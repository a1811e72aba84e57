"""The one HTTP client the web front has: the six services' public APIs, behind the gateway.

A page calls a service through its typed client (``clients/<service>.py``); all of them go through
:meth:`ServiceApis.call`, which adds the caller's token, the correlation id and the trace context, and turns
answers into either JSON or one of two exceptions: :class:`ApiError` (the service refused: a 4xx with its
problem+json) or :class:`ServiceDown` (it could not be reached, timed out or said it is unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from mart_common.observability.logs import current_correlation_id
from mart_common.observability.tracing import current_traceparent

from web_service.settings import WebSettings

#: How a page names each service when it is unavailable.
SERVICE_WORDS = {
    "user-service": "accounts",
    "product-service": "the catalog",
    "inventory-service": "stock levels",
    "order-service": "orders",
    "payment-service": "payments",
    "notification-service": "notifications",
}


class ServiceDown(Exception):
    """A service could not answer (refused connection, timeout, 502/503/504)."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} unavailable: {reason}")
        self.service = service
        self.reason = reason

    @property
    def words(self) -> str:
        return SERVICE_WORDS.get(self.service, self.service)


@dataclass
class ApiError(Exception):
    """A service refused the request: its status and problem+json (docs/api.md, "Conventions")."""

    service: str
    status: int
    problem: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.service} answered {self.status}: {self.detail}"

    @property
    def slug(self) -> str:
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or f"HTTP {self.status}")

    def field_errors(self) -> dict[str, str]:
        """Validation errors by field name (the last part of each error's location)."""
        out: dict[str, str] = {}
        for err in self.problem.get("errors") or []:
            loc = err.get("loc") or []
            name = str(loc[-1]) if loc else ""
            out.setdefault(name, str(err.get("msg", "invalid")))
        return out


class ServiceApis:
    """The long-lived HTTP client (one connection pool) to every service's API."""

    def __init__(self, settings: WebSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.api_timeout_s, connect=5.0),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        client_ip: str | None = None,
    ) -> httpx.Response:
        """One call; 2xx and 304 answers are returned, anything else raises."""
        out = {"accept": "application/json", **(headers or {})}
        if token:
            out["authorization"] = f"Bearer {token}"
        if request_id := current_correlation_id():
            out["x-request-id"] = request_id
        if traceparent := current_traceparent():
            out["traceparent"] = traceparent
        if client_ip:
            out["x-forwarded-for"] = client_ip
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self.http.request(
                method,
                self.settings.api_base(service) + path,
                params=clean,
                json=json,
                data=data,
                headers=out,
            )
        except httpx.TimeoutException as exc:
            raise ServiceDown(service, "timed out") from exc
        except httpx.TransportError as exc:
            raise ServiceDown(service, type(exc).__name__) from exc
        if response.status_code in (502, 503, 504):
            raise ServiceDown(service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:200]}
            raise ApiError(service, response.status_code, problem if isinstance(problem, dict) else {})
        return response
