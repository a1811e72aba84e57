"""The lean floor: the catalog's first page (20 products with the total) and one product by id from the
same PostgreSQL database, served by minimal FastAPI routes with one asyncpg query each and no middleware —
what the same database work costs without our stack. ``uvicorn bench.lean:app`` with ``BENCH_LEAN_DSN``
naming product-service's database (a plain ``postgresql://`` DSN)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Response

_QUERY = """
SELECT id, sku, name, description, price_cents, currency, category_id, archived, version, rating_avg,
       rating_count, created_at, updated_at, count(*) OVER () AS total
FROM products WHERE NOT archived ORDER BY created_at DESC, id LIMIT $1 OFFSET $2
"""
_ONE = """
SELECT id, sku, name, description, price_cents, currency, category_id, archived, version, rating_avg,
       rating_count, created_at, updated_at
FROM products WHERE id = $1
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
    items = [_public(r) for r in rows]
    total = rows[0]["total"] if rows else 0
    body = json.dumps({"items": items, "total": total, "limit": limit, "offset": offset})
    return Response(body, media_type="application/json")


@app.get("/products/{product_id}")
async def product(product_id: uuid.UUID) -> Response:
    assert _pool is not None
    row = await _pool.fetchrow(_ONE, product_id)
    if row is None or row["archived"]:
        return Response(status_code=404)
    return Response(json.dumps(_public(row)), media_type="application/json")


def _public(r: asyncpg.Record) -> dict[str, Any]:
    return {
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
