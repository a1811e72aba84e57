"""The lean floor: the catalog's first page (20 products with the total) from the same PostgreSQL database,
served by a minimal FastAPI route with one asyncpg query and no middleware — what the same database work
costs without our stack. ``uvicorn bench.lean:app`` with ``BENCH_LEAN_DSN`` naming product-service's
database (a plain ``postgresql://`` DSN)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Response

_QUERY = """
SELECT id, sku, name, description, price_cents, currency, category_id, archived, version, rating_avg,
       rating_count, created_at, updated_at, count(*) OVER () AS total
FROM products WHERE NOT archived ORDER BY created_at DESC, id LIMIT $1 OFFSET $2
"""
_pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global _pool
    _pool = await asyncpg.create_pool(os.environ["BENCH_LEAN_DSN"], min_size=4, max_size=20)
    yield
    await _pool.close()


app = FastAPI(title="bench lean floor", lifespan=lifespan)


@app.get("/products")
async def products(limit: int = 20, offset: int = 0) -> Response:
    assert _pool is not None
    rows = await _pool.fetch(_QUERY, limit, offset)
    items = [
        {
            "id": str(r["id"]),
            "sku": r["sku"],
            "name": r["name"],
            "description": r["description"],
            "price_cents": r["price_cents"],
            "currency": r["currency"],
            "category_id": str(r["category_id"]) if r["category_id"] else None,
            "archived": r["archived"],
            "version": r["version"],
            "rating_avg": r["rating_avg"],
            "rating_count": r["rating_count"],
            "created_at": r["created_at"].isoformat(),
            "updated_at": r["updated_at"].isoformat(),
        }
        for r in rows
    ]
    total = rows[0]["total"] if rows else 0
    body = json.dumps({"items": items, "total": total, "limit": limit, "offset": offset})
    return Response(body, media_type="application/json")
