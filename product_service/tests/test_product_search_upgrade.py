"""The catalog's products, written before the text search's vector column (migration 0004), are found
by a search after the upgrade, on SQLite and PostgreSQL: ranked as before, archived ones never."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mart_common.db import Database
from product_service.models import Product

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(name: str, description: str = "", *, archived: bool = False, age: int = 0) -> dict:
    at = WHEN - timedelta(minutes=age)
    return {
        "id": uuid.uuid4(),
        "sku": f"OLD-{uuid.uuid4().hex[:8]}",
        "name": name,
        "description": description,
        "price_cents": 1000,
        "currency": "USD",
        "category_id": None,
        "archived": archived,
        "version": 1,
        "rating_avg": 0.0,
        "rating_count": 0,
        "created_at": at,
        "updated_at": at,
    }


async def test_products_written_before_the_upgrade_are_found_after_it(
    database_url: str, service_client
) -> None:
    db = Database(database_url)
    try:
        await db.migrate("product_service.migrations", "0003")
        async with db.engine.begin() as conn:
            await conn.execute(
                Product.__table__.insert(),
                [
                    _row("Copper kettle", "whistles", age=3),
                    _row("Tea tray", "fits a kettle and two cups", age=1),
                    _row("Archived kettle", archived=True),
                    _row("Oak settle", age=2),
                ],
            )
    finally:
        await db.dispose()

    async with service_client() as client:  # migrates to head

        async def names(q: str) -> list[str]:
            response = await client.get("/products", params={"q": q})
            assert response.status_code == 200, response.text
            return [p["name"] for p in response.json()["items"]]

        # The name's match first although the tray is newer; the archived kettle is not listed.
        assert await names("kettle") == ["Copper kettle", "Tea tray"]
        assert await names("kett") == ["Copper kettle", "Tea tray"]
        assert await names("kettel") == ["Copper kettle", "Tea tray"]
        assert await names("archived") == []
        assert await names("whistles cups") == []
        assert await names("settle") == ["Oak settle"]
