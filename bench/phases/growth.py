"""Growth: the catalog's and the order lists' latency as their tables grow, on PostgreSQL and SQLite.

For each database and each size (``Budget.growth_products``, ``Budget.growth_orders``): a fresh database,
the service's migrations, rows made in bulk by one SQL statement (not through the API), and the service
running in this process (its lifespan, an in-process bus). Then every size of one database answers the
same requests in turn, round after round, sequentially (``Cache-Control: no-cache``: from the database,
never from the catalog cache), so that the sizes are compared side by side under the same machine load;
the figure is each request's p50 at the largest size ÷ at the smallest.

The data: products named ``Item <n>`` in 10 categories, 20 of them (at every size) ``Steel kettle <n>``,
each described as ``Bulk product number <n>``; orders of 10,000 customers, 20 of them (at every size) the
measuring customer's. The searches: ``kettle`` and ``kettel`` (20 matches at every size), ``bulk`` (every
product matches).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.console import say
from bench.phases import Context
from bench.results import Growth, GrowthPoint
from bench.sampling import Sampler

KETTLES = 20  # products named "Steel kettle" and orders of the measuring customer, at every size
CATEGORIES = 10
CUSTOMERS = 10_000
NO_CACHE = {"Cache-Control": "no-cache"}

_ME = uuid.UUID(int=10**9)  # the measuring customer (not one of the CUSTOMERS)


def _category(k: int) -> uuid.UUID:
    return uuid.UUID(int=10**12 + k)


# Dialect pieces of the bulk statements: a uuid from an integer, a time ``i`` seconds ago, false, JSON text.
_SQL = {
    "postgresql": {
        "uuid": "lpad(to_hex({}), 32, '0')::uuid",
        "ago": "now() - ({}) * interval '1 second'",
        "false": "false",
        "json": "CAST({} AS json)",
    },
    "sqlite": {
        "uuid": "printf('%032x', {})",
        "ago": "strftime('%Y-%m-%d %H:%M:%f000', 'now', '-' || ({}) || ' seconds')",
        "false": "0",
        "json": "{}",
    },
}


def _sequence(n: str) -> str:
    return f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "


def _products_sql(dialect: str) -> str:
    d = _SQL[dialect]
    cats = " UNION ALL ".join(
        f"SELECT {k} AS k, {d['uuid'].format(10**12 + k)} AS id" for k in range(CATEGORIES)
    )
    return (
        "INSERT INTO products (id, sku, name, description, price_cents, currency, category_id, archived,"
        " version, rating_avg, rating_count, created_at, updated_at) "
        + _sequence(":n")
        + f", cats(k, id) AS ({cats}) "
        f"SELECT {d['uuid'].format('i')}, 'SKU-' || i,"
        " CASE WHEN i % :step = 0 THEN 'Steel kettle ' || i ELSE 'Item ' || i END,"
        " 'Bulk product number ' || i, 100 + i % 10000, 'USD', cats.id,"
        f" {d['false']}, 1, 0.0, 0, {d['ago'].format('i')}, {d['ago'].format('i')}"
        f" FROM seq JOIN cats ON cats.k = i % {CATEGORIES}"
    )


def _categories_sql(dialect: str) -> str:
    d = _SQL[dialect]
    rows = " UNION ALL ".join(
        f"SELECT {d['uuid'].format(10**12 + k)}, 'Category {k}', 'category {k}', '', {d['ago'].format(0)}"
        for k in range(CATEGORIES)
    )
    return f"INSERT INTO categories (id, name, name_key, description, created_at) {rows}"


def _orders_sql(dialect: str) -> str:
    d = _SQL[dialect]
    me = d["uuid"].format(_ME.int)
    return (
        "INSERT INTO orders (id, user_id, status, items, total_cents, currency, shipping_address, history,"
        " payment_deadline, payment_id, created_at, updated_at) "
        + _sequence(":n")
        + f"SELECT {d['uuid'].format('i')},"
        f" CASE WHEN i % :step = 0 THEN {me} ELSE {d['uuid'].format(f'1 + i % {CUSTOMERS}')} END,"
        f" 'DELIVERED', {d['json'].format(':items')}, 1000, 'USD', {d['json'].format(':address')},"
        f" {d['json'].format(':history')}, NULL, NULL, {d['ago'].format('i')}, {d['ago'].format('i')}"
        " FROM seq"
    )


_ORDER_JSON = {
    "items": '[{"product_id": "00000000-0000-0000-0000-000000000001", "product_name": "Item 1",'
    ' "quantity": 1, "unit_price_cents": 1000}]',
    "address": '{"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}',
    "history": '[{"status": "DELIVERED", "at": "2026-01-01T00:00:00+00:00", "reason": ""}]',
}


async def _fill(client: Any, statements: list[tuple[str, dict[str, Any]]]) -> float:
    """Run the bulk statements in one transaction; returns how long they took."""
    from sqlalchemy import text

    t0 = time.perf_counter()
    async with client.db.engine.begin() as conn:
        for sql, params in statements:
            await conn.execute(text(sql), params)
        if client.db.is_postgres:
            await conn.execute(text("ANALYZE"))
    return time.perf_counter() - t0


def _requests_catalog(n: int) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        "list": ("/products?limit=20", NO_CACHE),
        "search": ("/products?limit=20&q=kettle", NO_CACHE),
        "search_typo": ("/products?limit=20&q=kettel", NO_CACHE),
        "category": (f"/products?limit=20&category_id={_category(3)}", NO_CACHE),
        "by_id": (f"/products/{uuid.UUID(int=n // 2)}", NO_CACHE),
    }


def _requests_broad(_n: int) -> dict[str, tuple[str, dict[str, str]]]:
    """A word of every product: its matches, all ranked and counted, grow with the catalog. Measured on
    its own (fewer rounds), after the others, so that its large answers do not slow theirs."""
    return {"search_broad": ("/products?limit=20&q=bulk", NO_CACHE)}


def _requests_orders(keys: Any) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        "my_orders": ("/orders?limit=20", keys.headers(_ME, "customer")),
        "admin_orders": ("/orders?limit=20", keys.headers(uuid.uuid4(), "admin")),
    }


async def _measure(
    clients: dict[int, Any], requests: Callable[[int], dict[str, tuple[str, dict[str, str]]]], rounds: int
) -> dict[str, dict[int, list[float]]]:
    """Latencies of each request at each size: round after round, every size in turn."""
    out: dict[str, dict[int, list[float]]] = {}
    for _ in range(rounds):
        for size, client in clients.items():
            for name, (path, headers) in requests(size).items():
                t0 = time.perf_counter()
                response = await client.get(path, headers=headers)
                took = time.perf_counter() - t0
                if response.status_code != 200:
                    raise RuntimeError(f"{name} at {size}: {response.status_code} {response.text[:300]}")
                out.setdefault(name, {}).setdefault(size, []).append(took)
    return out


async def _one_database(ctx: Context, backend: str, tmp: Path) -> list[GrowthPoint]:
    from mart_testkit.fixtures import JwtKeys, create_postgres_database, drop_postgres_database
    from mart_testkit.service import run_service, settings_for
    from order_service.main import create_app as order_app
    from order_service.settings import OrderSettings
    from product_service.main import create_app as product_app
    from product_service.settings import ProductSettings

    b = ctx.budget
    keys = JwtKeys()
    urls: list[str] = []

    async def url(name: str) -> str:
        if backend == "postgres":
            made = await create_postgres_database()
            urls.append(made)
            return made
        return f"sqlite+aiosqlite:///{tmp / name}.sqlite"

    points: list[GrowthPoint] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            catalog: dict[int, Any] = {}
            for n in b.growth_products:
                where = tmp / f"products-{n}"
                where.mkdir()
                settings = settings_for(
                    ProductSettings, await url(f"products-{n}"), where, log_level="WARNING"
                )
                client = await stack.enter_async_context(
                    run_service(product_app, settings, token_verifier=keys.verifier())
                )
                dialect = client.db.engine.dialect.name
                params = {"n": n, "step": n // KETTLES}
                took = await _fill(client, [(_categories_sql(dialect), {}), (_products_sql(dialect), params)])
                say(f"  growth {backend}: {n:,} products made in {took:.1f}s")
                catalog[n] = client
            orders: dict[int, Any] = {}
            for n in b.growth_orders:
                where = tmp / f"orders-{n}"
                where.mkdir()
                settings = settings_for(OrderSettings, await url(f"orders-{n}"), where, log_level="WARNING")
                client = await stack.enter_async_context(
                    run_service(order_app, settings, token_verifier=keys.verifier())
                )
                params = {"n": n, "step": n // KETTLES, **_ORDER_JSON}
                took = await _fill(client, [(_orders_sql(client.db.engine.dialect.name), params)])
                say(f"  growth {backend}: {n:,} orders made in {took:.1f}s")
                orders[n] = client

            with Sampler({"bench": os.getpid()}) as sampler:
                measured = await _measure(catalog, _requests_catalog, b.growth_n)
                measured |= await _measure(orders, lambda _n: _requests_orders(keys), b.growth_n)
                measured |= await _measure(catalog, _requests_broad, max(5, b.growth_n // 10))
            other = sampler.processes().unrelated_cpu_cores
            for name, by_size in measured.items():
                p50 = {size: statistics.median(v) * 1000 for size, v in by_size.items()}
                points.append(GrowthPoint(database=backend, request=name, p50_ms=p50, other_cpu_cores=other))
                sizes = sorted(p50)
                say(
                    f"  growth {backend} {name}: "
                    + ", ".join(f"{s:,}: {p50[s]:.2f} ms" for s in sizes)
                    + f" -> {p50[sizes[-1]] / p50[sizes[0]]:.2f}x (other CPU {other:.2f} cores)"
                )
    finally:
        for made in urls:
            await drop_postgres_database(made)
    return points


def growth(ctx: Context) -> Growth:
    """The growth phase: PostgreSQL, then SQLite (the embedded mode's database)."""
    points: list[GrowthPoint] = []
    for backend in ("postgres", "sqlite"):
        with tempfile.TemporaryDirectory(prefix=f"bench-growth-{backend}-") as tmp:
            points += asyncio.run(_one_database(ctx, backend, Path(tmp)))
    return Growth(points=points)
