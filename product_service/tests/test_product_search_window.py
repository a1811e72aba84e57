"""A text search that many products match, on SQLite and PostgreSQL: it considers only the newest matches
(``MART_SEARCH_WINDOW``, here its least value, 100), says that more matched, and keeps its filters, sorts
and pages exact within them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

WINDOW = 100


async def test_a_search_matching_more_than_the_window_answers_from_its_newest_matches(
    service_client, catalog
) -> None:
    async with service_client(search_window=WINDOW) as client:
        vintage = await catalog.category(client, "Vintage")
        # The oldest matches: a category of their own, the best text match (the name) and the lowest price.
        old = [
            await catalog.product(
                client, name=f"Vintage widget {i}", price_cents=1 + i, category_id=vintage["id"]
            )
            for i in range(3)
        ]
        # Then WINDOW + 2 newer ones, matching by their description; the two oldest of them fall out too.
        newer = [
            await catalog.product(
                client,
                name="Widget deluxe" if i in (0, WINDOW // 2) else f"Thing {i}",
                description="a widget",
                price_cents=1000 + (i * 37) % 500,
            )
            for i in range(WINDOW + 2)
        ]
        window = newer[2:]  # the WINDOW newest matches

        async def page(**params) -> dict:
            response = await client.get("/products", params={"q": "widget", **params})
            assert response.status_code == 200, response.text
            return response.json()

        best = await page()
        assert (best["total"], best["total_exact"]) == (WINDOW, False)
        # The best match of the window first (its name), then the window's newest; none older.
        ids = [p["id"] for p in best["items"]]
        assert ids == [window[WINDOW // 2 - 2]["id"]] + [p["id"] for p in reversed(window[-19:])]
        assert not {p["id"] for p in old + newer[:2]} & set(ids)

        by_price = await page(sort="price")
        cheapest = sorted(window, key=lambda p: (p["price_cents"], p["id"]))
        assert [p["id"] for p in by_price["items"]] == [p["id"] for p in cheapest[:20]]
        assert (by_price["total"], by_price["total_exact"]) == (WINDOW, False)

        # Every page the total promises exists, and holds the window only; past it, nothing.
        seen = []
        for offset in range(0, WINDOW, 20):
            seen += [p["id"] for p in (await page(sort="-created_at", offset=offset))["items"]]
        assert seen == [p["id"] for p in reversed(window)]
        beyond = await page(offset=WINDOW)
        assert (beyond["items"], beyond["total"], beyond["total_exact"]) == ([], WINDOW, False)

        # The category applies before the window: its matches, all older than the window's, are found.
        in_vintage = await page(category_id=vintage["id"])
        assert [p["id"] for p in in_vintage["items"]] == [p["id"] for p in reversed(old)]
        assert (in_vintage["total"], in_vintage["total_exact"]) == (3, True)
        # So do the price bounds.
        under_ten = await page(max_price_cents=10, sort="price")
        assert [p["id"] for p in under_ten["items"]] == [p["id"] for p in old]
        assert under_ten["total_exact"] is True

        # Fewer matches than the window: the exact total, the same order as ever.
        deluxe = await page(q="deluxe")
        assert [p["name"] for p in deluxe["items"]] == ["Widget deluxe", "Widget deluxe"]
        assert [p["id"] for p in deluxe["items"]] == [newer[WINDOW // 2]["id"], newer[0]["id"]]
        assert (deluxe["total"], deluxe["total_exact"]) == (2, True)
        # Lists without a text count every product.
        listing = (await client.get("/products", params={"limit": 1})).json()
        assert (listing["total"], listing["total_exact"]) == (len(old) + len(newer), True)


async def test_the_window_is_a_bounded_setting(service_settings) -> None:
    assert service_settings().search_window == 1000
    for bad in (99, 100_001):
        with pytest.raises(ValidationError, match="search_window"):
            service_settings(search_window=bad)
