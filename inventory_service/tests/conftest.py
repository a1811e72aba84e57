"""Fixtures of the inventory service's tests: the service on a fresh database (SQLite and PostgreSQL), and
``inventory``: the running service with the saga's steps (products, orders placed, paid, cancelled)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from inventory_service.main import create_app
from inventory_service.models import Reservation
from inventory_service.settings import InventorySettings
from mart.orders.v1 import orders_pb2
from mart.products.v1 import products_pb2
from mart_common.messaging import Envelope, outbox_table
from mart_testkit.service import ServiceClient, service_fixtures
from sqlalchemy import select

from mart_common import contracts

# service_settings(**overrides), service_client(**overrides): the running inventory service
service_settings, service_client = service_fixtures(create_app, InventorySettings)


class Inventory:
    """The running service (``client``) with an admin's headers and the steps of the saga it reacts to."""

    def __init__(self, client: ServiceClient, jwt_keys: Any) -> None:
        self.client = client
        self.runtime = client.runtime
        self.feed = client.feed
        self.admin = jwt_keys.headers(uuid.uuid4(), "admin")

    async def product(self, on_hand: int = 0) -> uuid.UUID:
        pid = uuid.uuid4()
        await self.feed(
            products_pb2.ProductCreated(product=products_pb2.Product(product_id=str(pid), version=1))
        )
        if on_hand:
            r = await self.client.post(
                f"/stock/{pid}/adjustments", json={"delta": on_hand, "reason": "initial"}, headers=self.admin
            )
            assert r.status_code == 201, r.text
        return pid

    async def stock(self, pid: uuid.UUID) -> tuple[int, int]:
        body = (await self.client.get(f"/stock/{pid}")).json()
        assert body["available"] == body["on_hand"] - body["reserved"]
        return body["on_hand"], body["reserved"]

    async def place(self, order_id: uuid.UUID, *lines: tuple[uuid.UUID, int]) -> Envelope:
        return await self.feed(
            orders_pb2.OrderPlaced(
                order_id=str(order_id),
                lines=[orders_pb2.OrderLine(product_id=str(p), quantity=q) for p, q in lines],
            )
        )

    async def published(self, cls) -> list:
        async with self.runtime.db.session() as s:
            rows = (await s.execute(select(outbox_table).order_by(outbox_table.c.seq))).all()
        name = contracts.ce_type(cls)
        return [contracts.decode(r.ce_type, r.payload) for r in rows if r.ce_type == name]

    async def reservation(self, order_id: uuid.UUID) -> str | None:
        async with self.runtime.db.session() as s:
            res = await s.get(Reservation, order_id)
            return None if res is None else res.status


@pytest.fixture
async def inventory(service_client: Any, jwt_keys: Any) -> AsyncIterator[Inventory]:
    async with service_client(low_stock_threshold=5, reservation_sweep_interval_s=3600) as client:
        yield Inventory(client, jwt_keys)


