"""The web front's own cost (docs/web.md): its home, catalog and product pages served by one web-service
process in front of the distributed stack's services, next to the catalog API those pages call.

A page costs more than the API call it needs: it makes one to three calls (the catalog page: the products
and the categories; the product page: the product, its stock and its reviews) and renders a template. The
ratio ``page req/s ÷ catalog API req/s`` says how much of the API's capacity one page view takes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import probes

#: The pages measured, and the API calls each makes per view (anonymous visitor).
PAGES = (
    ("home", "/", "GET /products (newest 8) + GET /categories"),
    ("catalog", "/products", "GET /products (a page of 12) + GET /categories"),
    ("product", "/products/{id}", "GET /products/{id} + GET /stock/{id} + GET /products/{id}/reviews"),
)


@dataclass(frozen=True)
class PageRun:
    name: str
    path: str
    calls: str
    rps: float
    p99_ms: float
    errors: int
    web_cpu_ms_per_page: float | None
    over_catalog_api: float | None


def web_pages(
    service_bases: dict[str, str],
    product_id: str,
    catalog_api_rps: float,
    *,
    connections: int,
    duration_s: int,
    data_dir: str,
    say: Callable[[str], None],
) -> list[PageRun]:
    """Start one web-service process calling ``service_bases`` (service name -> base URL) directly, and
    measure each page with wrk; ``catalog_api_rps``: the catalog list's req/s measured in the same run."""
    env = {
        "MART_SERVICE_URLS": json.dumps(service_bases),
        "MART_DATA_DIR": data_dir,
        "MART_LOG_LEVEL": "WARNING",
        "MART_EVENT_BUS": "inprocess",  # the pages measured read no events
    }
    web, port = probes.start_app("web_service.main:app", "/health", ["--no-access-log"], env)
    out: list[PageRun] = []
    try:
        for name, path, calls in PAGES:
            url = f"http://127.0.0.1:{port}{path.replace('{id}', product_id)}"
            r = probes.wrk(url, connections=connections, duration_s=duration_s, server_pids=[web.pid])
            cpu = None
            if r.get("requests") and r.get("server_cpu_cores") is not None:
                cpu = r["server_cpu_cores"] * duration_s * 1000 / r["requests"]
            run = PageRun(
                name=name,
                path=path,
                calls=calls,
                rps=r["rps"],
                p99_ms=r["p99_ms"],
                errors=r["errors"],
                web_cpu_ms_per_page=cpu,
                over_catalog_api=r["rps"] / catalog_api_rps if catalog_api_rps else None,
            )
            out.append(run)
            say(
                f"  web {name}: {run.rps:.0f} pages/s p99 {run.p99_ms:.1f} ms errors {run.errors}"
                + (f", {cpu:.2f} ms web-service CPU per page" if cpu is not None else "")
                + (f" (÷ catalog API = {run.over_catalog_api:.2f})" if run.over_catalog_api else "")
            )
    finally:
        web.terminate()
        web.wait(10)
    return out


def as_dict(runs: list[PageRun]) -> dict[str, Any]:
    return {r.name: r.__dict__ for r in runs}
