"""Fixtures of the product service's tests: the service on a fresh database (SQLite and PostgreSQL), and
helpers that make products and categories as an admin."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from mart_testkit.service import service_fixtures
from product_service.main import create_app
from product_service.settings import ProductSettings

# service_settings(**overrides), service_client(**overrides): the running product service (tokens: jwt_keys)
service_settings, service_client = service_fixtures(create_app, ProductSettings)


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
