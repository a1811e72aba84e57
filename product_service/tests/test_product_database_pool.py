"""A product-service process whose every database connection is busy answers the catalog with a clear 503
(problem+json, Retry-After) once it has waited MART_DB_POOL_TIMEOUT_S, and serves again as soon as a
connection is free (docs/scaling.md, "Connections")."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_request_that_finds_every_connection_busy_answers_503_then_the_next_is_served(
    service_client, catalog
) -> None:
    async with service_client(db_pool_size=3, db_pool_timeout_s=0.5) as client:
        await catalog.product(client, name="Kettle")
        async with AsyncExitStack() as held:
            # take every connection the process keeps (the outbox relay may hold one already)
            taken = 0
            while True:
                try:
                    await held.enter_async_context(client.db.engine.connect())
                except PoolTimeout:
                    break
                taken += 1
                assert taken <= 3, "the pool opened more connections than MART_DB_POOL_SIZE"
            response = await client.get("/products", headers={"Cache-Control": "no-cache"})
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"
            assert response.json()["type"].endswith("/database-busy")
        # the connections are back: the same request is served
        response = await client.get("/products", headers={"Cache-Control": "no-cache"})
        assert response.status_code == 200, response.text
        assert [p["name"] for p in response.json()["items"]] == ["Kettle"]
