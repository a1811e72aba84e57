"""Reviews: one per product per user, ratings kept exact, also under concurrency."""

from __future__ import annotations

import asyncio
import uuid

import pytest


async def test_reviews_keep_rating_avg_and_count(service_client, catalog) -> None:
    async with service_client() as client:
        product = await catalog.product(client)
        url = f"/products/{product['id']}/reviews"
        ann, bob = uuid.uuid4(), uuid.uuid4()

        first = await client.post(url, json={"rating": 5, "comment": "Great"}, headers=catalog.customer(ann))
        assert first.status_code == 201, first.text
        assert first.json()["user_id"] == str(ann) and first.json()["rating"] == 5
        second = await client.post(url, json={"rating": 2}, headers=catalog.customer(bob))
        assert second.status_code == 201
        admin_review = await client.post(url, json={"rating": 3}, headers=catalog.admin)
        assert admin_review.status_code == 201

        again = await client.post(url, json={"rating": 1}, headers=catalog.customer(ann))
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")

        got = (await client.get(f"/products/{product['id']}")).json()
        assert got["rating_count"] == 3 and got["rating_avg"] == pytest.approx(10 / 3, abs=1e-3)
        assert got["version"] == 1  # ratings are not catalog data: no new version, no event

        listed = (await client.get(url, params={"limit": 2})).json()
        assert listed["total"] == 3 and len(listed["items"]) == 2
        assert listed["items"][0]["rating"] == 3  # newest first

        assert (await client.post(url, json={"rating": 4})).status_code == 401
        assert (
            await client.post(
                f"/products/{uuid.uuid4()}/reviews", json={"rating": 4}, headers=catalog.customer()
            )
        ).status_code == 404
        assert (await client.get(f"/products/{uuid.uuid4()}/reviews")).status_code == 404
        for body in (
            {"rating": 0},
            {"rating": 6},
            {"rating": "5"},
            {"rating": 4.5},
            {},
            {"rating": 3, "comment": "x" * 2001},
        ):
            bad = await client.post(url, json=body, headers=catalog.customer())
            assert bad.status_code == 422, body

        assert (await client.delete(f"/products/{product['id']}", headers=catalog.admin)).status_code == 204
        assert (await client.post(url, json={"rating": 4}, headers=catalog.customer())).status_code == 404
        assert (await client.get(url)).status_code == 404


async def test_concurrent_reviews_do_not_drift(service_client, catalog) -> None:
    async with service_client() as client:
        product = await catalog.product(client)
        url = f"/products/{product['id']}/reviews"
        ratings = [1, 2, 3, 4, 5] * 4
        responses = await asyncio.gather(
            *(client.post(url, json={"rating": r}, headers=catalog.customer()) for r in ratings)
        )
        assert [r.status_code for r in responses] == [201] * len(ratings)
        same_user = catalog.customer(uuid.uuid4())
        dupes = await asyncio.gather(
            *(client.post(url, json={"rating": 5}, headers=same_user) for _ in range(5))
        )
        assert sorted(r.status_code for r in dupes) == [201, 409, 409, 409, 409]
        got = (await client.get(f"/products/{product['id']}")).json()
        assert got["rating_count"] == len(ratings) + 1
        assert got["rating_avg"] == pytest.approx((sum(ratings) + 5) / (len(ratings) + 1), abs=1e-3)
