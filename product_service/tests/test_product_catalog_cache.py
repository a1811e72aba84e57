"""Catalog answers kept in the process (docs/adr/0021-catalog-reads.md) are never older than the last write
any replica committed: two product-service instances on one PostgreSQL database, each with its own cache."""

from __future__ import annotations

import pytest
from mart_testkit.fixtures import eventually


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_write_on_one_replica_reaches_the_other_replicas_cached_catalog(
    service_client, catalog
) -> None:
    async with service_client() as first, service_client() as second:
        product = await catalog.product(first, name="Kettle", price_cents=2500)
        path = f"/products/{product['id']}"
        # The second replica answers (and keeps) the current price, list and item alike.
        assert (await second.get(path)).json()["price_cents"] == 2500
        listed = (await second.get("/products")).json()["items"]
        assert [p["price_cents"] for p in listed] == [2500]

        patched = await first.patch(path, json={"price_cents": 2700}, headers=catalog.admin)
        assert patched.status_code == 200

        async def second_sees_new_price() -> bool:
            item = (await second.get(path)).json()["price_cents"]
            page = (await second.get("/products")).json()["items"][0]["price_cents"]
            return item == page == 2700

        await eventually(second_sees_new_price, timeout=10)

        # An archive committed on the second replica leaves the first one's list and item at once.
        assert (await first.get("/products")).json()["total"] == 1
        assert (await second.delete(path, headers=catalog.admin)).status_code == 204

        async def first_sees_archive() -> bool:
            return (await first.get("/products")).json()["total"] == 0 and (
                await first.get(path)
            ).status_code == 404

        await eventually(first_sees_archive, timeout=10)


async def test_the_writing_replica_reads_its_own_write_at_once(service_client, catalog) -> None:
    async with service_client() as client:
        product = await catalog.product(client, name="Mug", price_cents=500)
        path = f"/products/{product['id']}"
        assert (await client.get(path)).json()["price_cents"] == 500
        assert (await client.get("/products", params={"q": "mug"})).json()["total"] == 1
        await client.patch(path, json={"price_cents": 600, "name": "Cup"}, headers=catalog.admin)
        # No waiting: the commit itself moved this process's catalog version.
        assert (await client.get(path)).json()["price_cents"] == 600
        assert (await client.get("/products", params={"q": "mug"})).json()["total"] == 0
        review = await client.post(
            f"/products/{product['id']}/reviews", json={"rating": 4}, headers=catalog.customer()
        )
        assert review.status_code == 201, review.text
        assert (await client.get(path)).json()["rating_count"] == 1
