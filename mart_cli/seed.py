"""Demo data, created through the services' HTTP APIs only (as the admin), idempotently.

Every step checks before it acts: categories by name, products by SKU, stock only for products that have
no stock movement yet, the customer only if absent. Running it twice, or after a crash half-way, ends in
the same catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from mart_cli.client import ApiError, bearer, check, list_all, login, wait_for
from mart_cli.credentials import Credentials
from mart_cli.services import Endpoints

CATEGORIES = ["Electronics", "Books", "Home & Kitchen", "Sports & Outdoors", "Grocery"]

# sku, name, category, price (cents), stock, description
PRODUCTS: list[tuple[str, str, str, int, int, str]] = [
    (
        "EL-HDPH-001",
        "Wireless Noise-Cancelling Headphones",
        "Electronics",
        19900,
        40,
        "Over-ear, 30 h battery.",
    ),
    ("EL-SPKR-002", "Portable Bluetooth Speaker", "Electronics", 5999, 60, "Waterproof, 12 h playback."),
    ("EL-KBRD-003", "Mechanical Keyboard", "Electronics", 8950, 35, "Tenkeyless, hot-swappable switches."),
    ("EL-MOUS-004", "Ergonomic Wireless Mouse", "Electronics", 3499, 80, "Vertical grip, silent clicks."),
    ("EL-CHRG-005", "65 W USB-C Charger", "Electronics", 2999, 120, "GaN, two USB-C ports."),
    ("EL-WEBC-006", "1080p Webcam", "Electronics", 4999, 50, "Autofocus, dual microphones."),
    (
        "BK-PYTH-001",
        "Fluent Python, 2nd Edition",
        "Books",
        5499,
        25,
        "Clear, concise and effective programming.",
    ),
    (
        "BK-DDIA-002",
        "Designing Data-Intensive Applications",
        "Books",
        4599,
        30,
        "The big ideas behind reliable systems.",
    ),
    ("BK-MSVC-003", "Building Microservices", "Books", 4299, 20, "Designing fine-grained systems."),
    ("BK-PRAG-004", "The Pragmatic Programmer", "Books", 3999, 25, "Your journey to mastery."),
    ("HK-COFM-001", "Pour-Over Coffee Maker", "Home & Kitchen", 3200, 45, "Borosilicate glass, 800 ml."),
    ("HK-KNIF-002", "Chef's Knife 20 cm", "Home & Kitchen", 7900, 30, "Forged stainless steel."),
    ("HK-PAN-003", "Cast Iron Skillet 26 cm", "Home & Kitchen", 3950, 40, "Pre-seasoned."),
    ("HK-KETL-004", "Electric Kettle 1.7 L", "Home & Kitchen", 2799, 55, "Temperature control, keep-warm."),
    ("HK-TOWL-005", "Cotton Bath Towel Set", "Home & Kitchen", 2450, 70, "Four towels, 600 gsm."),
    ("SP-YOGA-001", "Yoga Mat 6 mm", "Sports & Outdoors", 2599, 60, "Non-slip, with carry strap."),
    ("SP-BOTL-002", "Insulated Water Bottle 750 ml", "Sports & Outdoors", 1999, 150, "Cold 24 h, hot 12 h."),
    ("SP-TENT-003", "Two-Person Backpacking Tent", "Sports & Outdoors", 17900, 15, "1.9 kg, freestanding."),
    ("SP-DUMB-004", "Adjustable Dumbbell Pair", "Sports & Outdoors", 14900, 12, "2.5 to 24 kg each."),
    ("SP-RUNS-005", "Running Socks (3 pairs)", "Sports & Outdoors", 1499, 200, "Cushioned, breathable."),
    ("GR-COFB-001", "Single-Origin Coffee Beans 1 kg", "Grocery", 2400, 90, "Medium roast, Ethiopia."),
    ("GR-TEA-002", "Organic Green Tea (100 bags)", "Grocery", 899, 120, "Sencha from Shizuoka."),
    ("GR-OLIV-003", "Extra Virgin Olive Oil 1 L", "Grocery", 1650, 75, "Cold-pressed, first harvest."),
    ("GR-CHOC-004", "Dark Chocolate 85% (5 bars)", "Grocery", 1250, 100, "Fair-trade cocoa."),
]


class AdminLoginRefused(RuntimeError):
    """The admin account exists with a password other than the configured one."""


@dataclass
class SeedReport:
    categories_created: int = 0
    products_created: int = 0
    stock_adjusted: int = 0
    customer_created: bool = False
    products_total: int = 0


async def seed(
    client: httpx.AsyncClient,
    ep: Endpoints,
    creds: Credentials,
    *,
    say: Callable[[str], None] = lambda _m: None,
    timeout: float = 120.0,
) -> SeedReport:
    """Create the demo catalog, stock and customer (idempotent)."""
    report = SeedReport()
    admin = bearer(await _admin_token(client, ep, creds, timeout))
    categories = await _seed_categories(client, ep, admin, report)
    by_sku = await _seed_products(client, ep, admin, categories, report)
    if report.products_created:
        say(f"created {report.products_created} products; waiting for inventory to learn them")
    await _seed_stock(client, ep, admin, by_sku, report, timeout)
    report.customer_created = await _seed_customer(client, ep, creds)
    report.products_total = len(by_sku)
    return report


async def _admin_token(client: httpx.AsyncClient, ep: Endpoints, creds: Credentials, timeout: float) -> str:
    """The admin's access token, once the user service answers (it may still be starting)."""

    async def _login() -> str | None:
        try:
            return await login(client, ep, creds.admin.email, creds.admin.password)
        except ApiError as exc:
            if exc.response.status_code in (401, 403):
                raise AdminLoginRefused(
                    f"the admin {creds.admin.email} cannot log in with the password from "
                    f"{'MART_ADMIN_PASSWORD' if creds.admin.from_env else creds.path}: the account exists "
                    "with another password (set MART_ADMIN_EMAIL/MART_ADMIN_PASSWORD to it)"
                ) from None
            raise

    return await wait_for(_login, timeout=timeout, what="admin login")


async def _seed_categories(
    client: httpx.AsyncClient, ep: Endpoints, admin: dict[str, str], report: SeedReport
) -> dict[str, str]:
    """Category name -> id, creating the missing ones."""
    existing = {c["name"]: c["id"] for c in await _items(client, ep.product("/categories"))}
    for name in CATEGORIES:
        if name not in existing:
            created = check(
                await client.post(ep.product("/categories"), json={"name": name}, headers=admin), 201
            )
            existing[name] = created.json()["id"]
            report.categories_created += 1
    return existing


async def _seed_products(
    client: httpx.AsyncClient,
    ep: Endpoints,
    admin: dict[str, str],
    categories: dict[str, str],
    report: SeedReport,
) -> dict[str, dict]:
    """SKU -> product, creating the missing ones (by SKU)."""
    by_sku = {p["sku"]: p for p in await list_all(client, ep.product("/products"))}
    for sku, name, category, price, _stock, description in PRODUCTS:
        if sku in by_sku:
            continue
        response = await client.post(
            ep.product("/products"),
            json={
                "sku": sku,
                "name": name,
                "description": description,
                "price_cents": price,
                "currency": "USD",
                "category_id": categories[category],
            },
            headers=admin,
        )
        if response.status_code == 409:  # created concurrently; look it up again below
            continue
        by_sku[sku] = check(response, 201).json()
        report.products_created += 1
    if any(sku not in by_sku for sku, *_ in PRODUCTS):
        by_sku = {p["sku"]: p for p in await list_all(client, ep.product("/products"))}
    return by_sku


async def _seed_stock(
    client: httpx.AsyncClient,
    ep: Endpoints,
    admin: dict[str, str],
    by_sku: dict[str, dict],
    report: SeedReport,
    timeout: float,
) -> None:
    """Initial stock for every product without a stock movement yet."""

    # inventory learns products from ProductCreated (eventually); adjust once per product
    async def _stock(sku: str, quantity: int) -> bool:
        pid = by_sku[sku]["id"]

        async def known() -> bool:
            return (await client.get(ep.inventory(f"/stock/{pid}"))).status_code == 200

        await wait_for(known, timeout=timeout, what=f"inventory to know {sku}")
        movements = check(await client.get(ep.inventory(f"/stock/{pid}/adjustments"), headers=admin)).json()
        if movements["total"]:
            return False
        check(
            await client.post(
                ep.inventory(f"/stock/{pid}/adjustments"),
                json={"delta": quantity, "reason": "demo seed: initial stock"},
                headers=admin,
            ),
            201,
        )
        return True

    done = await asyncio.gather(*(_stock(sku, qty) for sku, _n, _c, _p, qty, _d in PRODUCTS))
    report.stock_adjusted = sum(done)


async def _seed_customer(client: httpx.AsyncClient, ep: Endpoints, creds: Credentials) -> bool:
    """Register the demo customer; False if the account exists already."""
    response = await client.post(
        ep.user("/auth/register"),
        json={
            "email": creds.customer.email,
            "password": creds.customer.password,
            "full_name": "Demo Customer",
        },
    )
    if response.status_code == 409:
        return False
    check(response, 201)
    return True


async def _items(client: httpx.AsyncClient, url: str) -> list[dict]:
    body = check(await client.get(url)).json()
    return body["items"] if isinstance(body, dict) else body
