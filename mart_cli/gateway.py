"""A tiny reverse proxy for the local distributed mode when Kong is not around (``mart dist up
--gateway``): ``/<name>-service/...`` on :8000 goes to that service's port with the prefix stripped, like
Kong's ``strip_path`` routes. The services then run with ``MART_ROOT_PATH=/<name>-service`` so their
``/docs`` load the spec through the prefix (exactly as behind Kong).

Several replicas of a service (``mart dist up --replicas``, docs/scaling.md) form one upstream, like a Kong
upstream with targets: requests go round robin; a replica that refuses connections is skipped for a few
seconds (passive health check) and the request goes to the next one. A request that may have reached a
replica is retried elsewhere only when its method is idempotent (as nginx's ``proxy_next_upstream``): a
POST whose connection broke mid-way gets a 502, never a second execution.

The web front, when it runs, is the upstream of ``/`` (every path no service prefix claims), unstripped,
as Kong's route to it. Answers are buffered, except event streams (``text/event-stream``: the web
front's live pages), which are passed on as they come. The gateway's own status (its upstreams and how
many requests each replica served) is at ``/_gateway``.

Not a production gateway: no auth plugin, no rate limiting; requests are buffered.
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
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
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
GATEWAY_STATUS = "/_gateway"
WEB_PREFIX = "/"
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
                    (p.strip("/") or "web"): {
                        "docs": f"{base}{p}/docs" if p != WEB_PREFIX else f"{base}/",
                        "upstream": u.targets[0],
                        "targets": u.served,
                    }
                    for p, u in pools.items()
                },
            }
        )

    def route(path: str) -> tuple[Upstream, str] | None:
        """The upstream of ``path`` and the path to send it (prefix stripped; the web front's unstripped)."""
        prefix = "/" + path.lstrip("/").split("/", 1)[0]
        if (pool := pools.get(prefix)) is not None and prefix != WEB_PREFIX:
            return pool, path[len(prefix) :] or "/"
        if (web := pools.get(WEB_PREFIX)) is not None:
            return web, path
        return None

    async def proxy(request: Request) -> Response:
        found = route(request.url.path)
        if found is None:
            return JSONResponse({"message": "no Route matched with those values"}, status_code=404)
        pool, rest = found
        tail = rest + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        client_host = request.client.host if request.client else ""
        headers["x-forwarded-for"] = ", ".join(
            filter(None, [request.headers.get("x-forwarded-for"), client_host])
        )
        if pool is not pools.get(WEB_PREFIX):
            headers["x-forwarded-prefix"] = "/" + request.url.path.lstrip("/").split("/", 1)[0]
        body = await request.body()
        client: httpx.AsyncClient = state["client"]
        upstream: httpx.Response | None = None
        error: Exception | None = None
        for target in pool.order():
            outgoing = client.build_request(request.method, target + tail, headers=headers, content=body)
            try:
                upstream = await client.send(outgoing, stream=True)
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
        if upstream is None:
            return JSONResponse({"message": f"upstream unavailable: {error}"}, status_code=502)
        out_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in upstream.headers.multi_items()
            if k.lower() not in HOP_BY_HOP
        ]
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            response: Response = StreamingResponse(
                upstream.aiter_raw(),
                status_code=upstream.status_code,
                background=BackgroundTask(upstream.aclose),
            )
            response.raw_headers = out_headers
            return response
        try:
            content = await upstream.aread()
        except httpx.TransportError as exc:
            return JSONResponse({"message": f"upstream failed mid-answer: {exc}"}, status_code=502)
        finally:
            await upstream.aclose()
        response = Response(content, status_code=upstream.status_code)
        response.raw_headers = [*out_headers, (b"content-length", str(len(content)).encode())]
        return response

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    routes = [Route(GATEWAY_STATUS, index)]
    if WEB_PREFIX not in pools:
        routes.append(Route("/", index))
    routes.append(Route("/{path:path}", proxy, methods=methods))
    return Starlette(routes=routes, lifespan=lifespan)


def app() -> Starlette:
    """For ``uvicorn --factory mart_cli.gateway:app``: upstreams from ``MART_GATEWAY_UPSTREAMS`` (JSON)."""
    raw = os.environ.get("MART_GATEWAY_UPSTREAMS")
    if raw:
        return build(json.loads(raw))
    return build({s.prefix: f"http://127.0.0.1:{s.port}" for s in SERVICES})
