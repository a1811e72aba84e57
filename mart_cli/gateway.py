"""A tiny reverse proxy for the local distributed mode when Kong is not around (``mart dist up
--gateway``): ``/<name>-service/...`` on :8000 goes to that service's port with the prefix stripped, like
Kong's ``strip_path`` routes. The services then run with ``MART_ROOT_PATH=/<name>-service`` so their
``/docs`` load the spec through the prefix (exactly as behind Kong).

Not a production gateway: no auth plugin, no rate limiting; requests are buffered, not streamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
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


def build(upstreams: dict[str, str]) -> Starlette:
    """``upstreams``: gateway prefix (``/user-service``) -> upstream base URL."""
    state: dict[str, httpx.AsyncClient] = {}

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
                    p.strip("/"): {"docs": f"{base}{p}/docs", "upstream": u} for p, u in upstreams.items()
                },
            }
        )

    async def proxy(request: Request) -> Response:
        path = request.url.path
        prefix = "/" + path.lstrip("/").split("/", 1)[0]
        upstream = upstreams.get(prefix)
        if upstream is None:
            return JSONResponse({"message": "no Route matched with those values"}, status_code=404)
        rest = path[len(prefix) :] or "/"
        url = upstream + rest + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        client_host = request.client.host if request.client else ""
        headers["x-forwarded-for"] = ", ".join(
            filter(None, [request.headers.get("x-forwarded-for"), client_host])
        )
        headers["x-forwarded-prefix"] = prefix
        try:
            upstream_response = await state["client"].request(
                request.method, url, headers=headers, content=await request.body()
            )
        except httpx.TransportError as exc:
            return JSONResponse({"message": f"upstream unavailable: {exc}"}, status_code=502)
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
