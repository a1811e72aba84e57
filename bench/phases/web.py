"""The web front's own cost (docs/web.md): its home, catalog and product pages served by one web-service
process in front of the distributed stack's services, next to the catalog API those pages call.

A page costs more than the API call it needs: it makes two or three calls (the catalog page: the products
and the categories; the product page: the product, its stock and its reviews) and renders a template. The
ratio ``page views/s ÷ catalog API req/s`` says how much of the API's capacity one page view takes.
"""

from __future__ import annotations

import json
from typing import Any

from bench import probes
from bench.console import say
from bench.phases import Context
from bench.results import Throughput

#: The pages measured (anonymous visitor), and the API calls one view makes.
PAGES = (
    ("home", "/", "GET /products (the newest 8) + GET /categories"),
    ("catalog", "/products", "GET /products (a page of 12) + GET /categories"),
    ("product", "/products/{id}", "GET /products/{id} + GET /stock/{id} + GET /products/{id}/reviews"),
)


def web_pages(ctx: Context, stack: Any, product_id: str) -> dict[str, Throughput]:
    """One web-service process calling the stack's services on their own ports, each page under wrk."""
    from mart_cli.services import SERVICES

    env = {
        "MART_SERVICE_URLS": json.dumps({s.name: getattr(stack.bases, s.short) for s in SERVICES}),
        "MART_DATA_DIR": str(stack.cfg.data_dir),
        "MART_LOG_LEVEL": "WARNING",
        "MART_EVENT_BUS": "inprocess",  # the pages measured read no events
    }
    web, port = probes.start_app("web_service.main:app", "/health", ["--no-access-log"], env)
    out: dict[str, Throughput] = {}
    try:
        for name, path, calls in PAGES:
            r = ctx.wrk(
                f"http://127.0.0.1:{port}{path.replace('{id}', product_id)}",
                path=f"GET {path} ({calls})",
                server_pids=[web.pid],
            )
            out[name] = r
            cpu = r.server_cpu_ms_per_request
            say(
                f"  web {name}: {r.rps or 0:.0f} pages/s p99 {r.p99_ms or 0:.1f} ms errors {r.errors}"
                + (f", web-service CPU {cpu:.2f} ms/page" if cpu is not None else "")
            )
    finally:
        web.terminate()
        web.wait(10)
    return out
