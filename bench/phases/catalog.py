"""Catalog reads of one product-service process with wrk, next to the lean floor, and a profiled run."""

from __future__ import annotations

import time
from typing import Any

from bench import probes, profiling
from bench.console import say
from bench.phases import Context
from bench.results import Catalog, Profile, Throughput


def catalog(ctx: Context, stack: Any, product_ids: list[str]) -> Catalog:
    pid = stack.pids().get("product-service")
    # The lean floor: the same first page (with the total) from the same database by a minimal FastAPI
    # route with one asyncpg query and no middleware (bench/lean.py): what our stack adds to that work.
    from mart_cli.services import SERVICES

    product = next(s for s in SERVICES if s.short == "product")
    dsn = stack.cfg.database_url(product).replace("postgresql+asyncpg://", "postgresql://")
    middle = product_ids[len(product_ids) // 2]
    lean_proc, lean_port = probes.start_lean(dsn, ["--no-access-log"])
    try:
        lean = ctx.wrk(
            f"http://127.0.0.1:{lean_port}/products?limit=20",
            path="GET /products?limit=20 (lean floor)",
            server_pids=[lean_proc.pid],
        )
        lean_item = ctx.wrk(
            f"http://127.0.0.1:{lean_port}/products/{middle}",
            path="GET /products/{id} (lean floor)",
            server_pids=[lean_proc.pid],
        )
    finally:
        lean_proc.terminate()
        lean_proc.wait(10)
    say(
        f"  lean floor (one asyncpg query, no middleware): list {lean.rps or 0:.0f} req/s, "
        f"item {lean_item.rps or 0:.0f} req/s"
    )
    # list/item: as clients see them (answers kept in the process until the catalog changes);
    # list_db/item_db: every request from the database (the request says Cache-Control: no-cache).
    no_cache = {"Cache-Control": "no-cache"}
    reads: dict[str, Throughput] = {}
    for name, path, headers in (
        ("list", "/products?limit=20", None),
        ("list_db", "/products?limit=20", no_cache),
        ("item", f"/products/{middle}", None),
        ("item_db", f"/products/{middle}", no_cache),
        ("health", "/health", None),
    ):
        r = ctx.wrk(
            stack.bases.product + path,
            path="GET " + ("/products/{id}" if name.startswith("item") else path),
            server_pids=[pid] if pid else None,
            headers=headers,
        )
        reads[name] = r
        say(
            f"  catalog {name}: {r.rps or 0:.0f} req/s p99 {r.p99_ms or 0:.1f} ms errors {r.errors} "
            f"(wrk cpu {r.gen_cpu_cores:.2f} cores, product-service {r.server_cpu_cores or 0:.2f})"
        )
    return Catalog(lean=lean, lean_item=lean_item, profile=_profile(ctx, stack, pid), **reads)


def _profile(ctx: Context, stack: Any, pid: int | None) -> Profile | None:
    """A separate, profiled run of the list endpoint from the database (not a measured one)."""
    cmd = profiling.py_spy_cmd()
    if not cmd or not pid:
        return None
    b = ctx.budget
    raw = ctx.out / "profile-catalog.collapsed.txt"
    dur = max(4, b.wrk_s // 2)
    spy = profiling.py_spy_record(cmd, pid, dur + 1, raw)
    time.sleep(0.5)
    r = probes.wrk(  # the database path (the cached one is the /health stack plus a dict lookup)
        stack.bases.product + "/products?limit=20",
        connections=b.wrk_conns,
        duration_s=dur,
        headers={"Cache-Control": "no-cache"},
    )
    spy.communicate(timeout=120)
    if not raw.exists():
        return Profile(files=[], summary={}, error="py-spy wrote no profile")
    during = f"wrk GET /products?limit=20, Cache-Control: no-cache ({r['rps'] or 0:.0f} req/s while profiled)"
    summ = profiling.summarize_profile(raw, "product-service", during)
    (ctx.out / "profile-catalog.txt").write_text(summ["text"])
    say(f"  profiled a separate catalog list run: {ctx.out.name}/profile-catalog.txt")
    return Profile(
        files=[raw.name, "profile-catalog.txt"],
        summary={
            "by_package": summ["by_package"],
            "top_self": summ["top_self"][:10],
            "samples": summ["samples"],
        },
    )
