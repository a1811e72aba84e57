"""Fixtures of the order service's tests: the service on a fresh database (SQLite and PostgreSQL), and
``orders``: the running service with a customer, an admin and the events it learns products and the saga's
steps from."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mart.products.v1 import products_pb2
from mart_common.messaging import outbox_table
from mart_testkit.service import ServiceClient, service_fixtures
from order_service.main import create_app
from order_service.settings import OrderSettings
from sqlalchemy import select

from mart_common import contracts

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "us"}

# service_settings(**overrides), service_client(**overrides): the running order service
service_settings, service_client = service_fixtures(create_app, OrderSettings)


class Orders:
    """The running service (``client``), a customer's and an admin's headers, and the events of the saga it
    reacts to."""

    def __init__(self, client: ServiceClient, jwt_keys: Any) -> None:
        self.client = client
        self.runtime = client.runtime
        self.feed = client.feed
        self.jwt = jwt_keys
        self.customer_id = uuid.uuid4()
        self.customer = jwt_keys.headers(self.customer_id, "customer")
        self.admin = jwt_keys.headers(uuid.uuid4(), "admin")

    async def product(
        self,
        price: int = 1000,
        currency: str = "USD",
        *,
        version: int = 1,
        pid=None,
        cls=None,
        archived=False,
    ):
        pid = pid or uuid.uuid4()
        cls = cls or products_pb2.ProductCreated
        await self.feed(
            cls(
                product=products_pb2.Product(
                    product_id=str(pid),
                    name=f"p-{pid.hex[:6]}",
                    price_cents=price,
                    currency=currency,
                    version=version,
                    archived=archived,
                )
            )
        )
        return pid

    async def place(self, *lines, headers=None, key=None, address=ADDRESS):
        h = dict(headers or self.customer)
        if key:
            h["Idempotency-Key"] = key
        body = {
            "items": [{"product_id": str(p), "quantity": q} for p, q in lines],
            "shipping_address": address,
        }
        return await self.client.post("/orders", json=body, headers=h)

    async def published(self, cls) -> list:
        async with self.runtime.db.session() as s:
            rows = (await s.execute(select(outbox_table).order_by(outbox_table.c.seq))).all()
        return [contracts.decode(r.ce_type, r.payload) for r in rows if r.ce_type == contracts.ce_type(cls)]

    async def status(self, order_id) -> str:
        return (await self.client.get(f"/orders/{order_id}", headers=self.admin)).json()["status"]


@pytest.fixture
async def orders(service_client: Any, jwt_keys: Any) -> AsyncIterator[Orders]:
    async with service_client(payment_window_s=900, payment_check_interval_s=3600) as client:
        yield Orders(client, jwt_keys)
