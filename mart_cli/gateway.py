"""A tiny reverse proxy for the local distributed mode when Kong is not around (``mart dist up
--gateway``): ``/<name>-service/...`` on :8000 goes to that service's port with the prefix stripped, like
Kong's ``strip_path`` routes. The services then run with ``MART_ROOT_PATH=/<name>-service`` so their
``/docs`` load the spec through the prefix (exactly as behind Kong).

Several replicas of a service (``mart dist up --replicas``, docs/scaling.md) form one upstream, like a Kong
upstream with targets: requests go round robin; a replica that refuses connections is skipped for a few
seconds (passive health check) and the request goes to the next one. A request that may have reached a
replica is retried elsewhere only when its method is idempotent (as nginx's ``proxy_next_upstream``): a
POST whose connection broke mid-way gets a 502, never a second execution.

Not a production gateway: no auth plugin, no rate limiting; requests are buffered, not streamed.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mart_cli.services import SERVICES

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
EJECT_S = 2.0  # how long a replica that refused a connection is left out of the rotation


class Upstream:
    """The replicas of one service: round robin over those not recently ejected."""

    def __init__(self, targets: list[str]) -> None:
        if not targets:
            raise ValueError("an upstream needs at least one target")
        self.targets = list(targets)
        self._next = itertools.cycle(range(len(self.targets)))
        self._ejected_until: dict[str, float] = {}
        self.served: dict[str, int] = dict.fromkeys(self.targets, 0)

    def order(self) -> list[str]:
        """The targets to try for one request: healthy ones from the round-robin position, then ejected."""
        start = next(self._next)
        rotated = self.targets[start:] + self.targets[:start]
        now = time.monotonic()
        healthy = [t for t in rotated if self._ejected_until.get(t, 0.0) <= now]
        return healthy + [t for t in rotated if t not in healthy]

    def eject(self, target: str) -> None:
        self._ejected_until[target] = time.monotonic() + EJECT_S

    def ok(self, target: str) -> None:
        self._ejected_until.pop(target, None)
        self.served[target] += 1


def build(upstreams: Mapping[str, str | list[str]]) -> Starlette:
    """``upstreams``: gateway prefix (``/user-service``) -> upstream base URL, or the URLs of its replicas."""
    state: dict[str, httpx.AsyncClient] = {}
    pools = {p: Upstream([u] if isinstance(u, str) else list(u)) for p, u in upstreams.items()}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=60, follow_redirects=False) as client:
            state["client"] = client
            yield

    async def index(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "name": "Online Mart (local distributed, built-in gateway)",
                "services": {
                    p.strip("/"): {"docs": f"{base}{p}/docs", "upstream": u.targets[0], "targets": u.served}
                    for p, u in pools.items()
                },
            }
        )

    async def proxy(request: Request) -> Response:
        path = request.url.path
        prefix = "/" + path.lstrip("/").split("/", 1)[0]
        pool = pools.get(prefix)
        if pool is None:
            return JSONResponse({"message": "no Route matched with those values"}, status_code=404)
        rest = path[len(prefix) :] or "/"
        tail = rest + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        client_host = request.client.host if request.client else ""
        headers["x-forwarded-for"] = ", ".join(
            filter(None, [request.headers.get("x-forwarded-for"), client_host])
        )
        headers["x-forwarded-prefix"] = prefix
        body = await request.body()
        upstream_response: httpx.Response | None = None
        error: Exception | None = None
        for target in pool.order():
            try:
                upstream_response = await state["client"].request(
                    request.method, target + tail, headers=headers, content=body
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                pool.eject(target)  # nothing reached this replica: try the next one
                error = exc
                continue
            except httpx.TransportError as exc:
                pool.eject(target)
                error = exc
                if request.method in IDEMPOTENT:
                    continue
                break  # the request may have run: do not run it twice
            pool.ok(target)
            break
        if upstream_response is None:
            return JSONResponse({"message": f"upstream unavailable: {error}"}, status_code=502)
        out_headers = [
            (k, v) for k, v in upstream_response.headers.multi_items() if k.lower() not in HOP_BY_HOP
        ]
        response = Response(upstream_response.content, status_code=upstream_response.status_code)
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers] + [
            (b"content-length", str(len(upstream_response.content)).encode())
        ]
        return response

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[Route("/", index), Route("/{path:path}", proxy, methods=methods)],
        lifespan=lifespan,
    )


def app() -> Starlette:
    """For ``uvicorn --factory mart_cli.gateway:app``: upstreams from ``MART_GATEWAY_UPSTREAMS`` (JSON)."""
    raw = os.environ.get("MART_GATEWAY_UPSTREAMS")
    if raw:
        return build(json.loads(raw))
    return build({s.prefix: f"http://127.0.0.1:{s.port}" for s in SERVICES})
