"""Fixtures of the product service's tests: an app on a fresh database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from mart_common.bus import EventBus
from mart_testkit.fixtures import running
from product_service.main import create_app
from product_service.settings import ProductSettings


@pytest.fixture
def catalog_client(
    database_url: str, tmp_path: Path, jwt_keys: Any
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with catalog_client() as client`` — the running product service (tokens: ``jwt_keys``)."""

    @asynccontextmanager
    async def _client(*, bus: EventBus | None = None, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        values: dict[str, Any] = {
            "database_url": database_url,
            "event_bus": "inprocess",
            "inprocess_bus_url": f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}",
            "data_dir": tmp_path,
            "log_json": False,
        }
        settings = ProductSettings(**{**values, **overrides})
        app = create_app(settings, bus=bus, token_verifier=jwt_keys.verifier())
        async with running(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return _client


@pytest.fixture
def catalog(jwt_keys: Any) -> Any:
    """Helpers: admin/customer headers and a product factory."""
    admin = jwt_keys.headers(uuid.uuid4(), "admin")
    counter = iter(range(1, 1_000_000))

    async def product(client: httpx.AsyncClient, **fields: Any) -> dict:
        n = next(counter)
        body = {
            "sku": f"SKU-{n:05d}",
            "name": f"Product {n}",
            "description": "",
            "price_cents": 1000,
            "currency": "USD",
        }
        body.update(fields)
        response = await client.post("/products", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return response.json()

    async def category(client: httpx.AsyncClient, name: str, description: str = "") -> dict:
        response = await client.post(
            "/categories", json={"name": name, "description": description}, headers=admin
        )
        assert response.status_code == 201, response.text
        return response.json()

    return SimpleNamespace(
        admin=admin,
        customer=lambda user_id=None: jwt_keys.headers(user_id or uuid.uuid4(), "customer"),
        product=product,
        category=category,
    )
