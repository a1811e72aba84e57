"""Payment-service test harness: the app on a fresh database of each backend, an in-process bus,
helpers to send order events, sign Stripe events and read what the service published (its outbox)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart_common.bus.inprocess import InProcessBus
from mart_common.messaging import inbox_table, outbox_table
from mart_testkit.fixtures import FAST_RETRY, JwtKeys, eventually
from mart_testkit.service import ServiceClient, envelope_of, service_fixtures
from payment_service.main import create_app
from payment_service.models import Payment
from payment_service.providers import PaymentProvider
from payment_service.settings import PaymentSettings
from sqlalchemy import select

from mart_common import contracts

WEBHOOK_SECRET = "whsec_test_" + "0" * 24


@dataclass
class Harness:
    client: ServiceClient
    bus: InProcessBus
    jwt_keys: JwtKeys
    provider: PaymentProvider
    customer: uuid.UUID = field(default_factory=uuid.uuid4)
    sent: list[str] = field(default_factory=list)  # ids of the events sent, in order

    @property
    def app(self) -> FastAPI:
        return self.client.app

    @property
    def db(self) -> Any:
        return self.client.db

    def auth(self, user: uuid.UUID | None = None, role: str = "customer") -> dict[str, str]:
        return self.jwt_keys.headers(user or self.customer, role)

    @property
    def admin(self) -> dict[str, str]:
        return self.jwt_keys.headers(uuid.uuid4(), "admin")

    async def send(self, message: Message, *, key: str) -> str:
        env = envelope_of(message, key, source="order-service")
        await self.bus.publish(env.to_bus())
        self.sent.append(env.id)
        return env.id

    async def all_processed(self) -> None:
        """Wait until every event sent so far is in the service's inbox: its handler ran and committed.

        The positive signal that processing passed a point; assertions that "nothing (more) happened"
        come after it, never after a sleep."""
        wanted = set(self.sent)

        async def check() -> bool:
            async with self.db.session() as s:
                rows = (
                    await s.execute(select(inbox_table.c.event_id).where(inbox_table.c.event_id.in_(wanted)))
                ).all()
            return {r[0] for r in rows} == wanted

        await eventually(check, timeout=15, message=f"{len(wanted)} events processed")

    async def order_awaiting_payment(
        self, order_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None, total_cents: int = 4200
    ) -> uuid.UUID:
        order_id = order_id or uuid.uuid4()
        await self.send(
            orders_pb2.OrderAwaitingPayment(
                order_id=str(order_id),
                user_id=str(user_id or self.customer),
                total_cents=total_cents,
                currency="USD",
            ),
            key=str(order_id),
        )
        return order_id

    async def order_cancelled(
        self, order_id: uuid.UUID, *, was_paid: bool, user_id: uuid.UUID | None = None
    ) -> None:
        await self.send(
            orders_pb2.OrderCancelled(
                order_id=str(order_id),
                user_id=str(user_id or self.customer),
                was_paid=was_paid,
                reason="test",
            ),
            key=str(order_id),
        )

    async def payment(self, order_id: uuid.UUID) -> Payment | None:
        async with self.db.session() as s:
            return await s.scalar(select(Payment).where(Payment.order_id == order_id))

    async def wait_payment(self, order_id: uuid.UUID, status: str = "REQUIRES_PAYMENT") -> Payment:
        async def check() -> Payment | None:
            p = await self.payment(order_id)
            return p if p is not None and p.status == status else None

        return await eventually(check, timeout=15, message=f"payment of {order_id} is {status}")

    async def published(self, event_cls: type[Message], order_id: uuid.UUID | None = None) -> list[Any]:
        """The events of one type this service recorded in its outbox (what the relay publishes)."""
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(outbox_table)
                    .where(outbox_table.c.ce_type == contracts.ce_type(event_cls))
                    .order_by(outbox_table.c.seq)
                )
            ).all()
        out = [contracts.decode(r.ce_type, r.payload) for r in rows]
        if order_id is not None:
            out = [m for m in out if m.order_id == str(order_id)]
        return out

    async def outbox_types(self, order_id: uuid.UUID) -> list[str]:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(outbox_table.c.ce_type)
                    .where(outbox_table.c.key == str(order_id))
                    .order_by(outbox_table.c.seq)
                )
            ).all()
        return [r[0].rsplit(".", 1)[1] for r in rows]


# service_settings(**overrides), service_client(**overrides): the running payment service
service_settings, service_client = service_fixtures(
    create_app,
    PaymentSettings,
    settings={"outbox_poll_interval_s": 0.05, "stripe_webhook_secret": WEBHOOK_SECRET},
)


@pytest.fixture
async def harness_factory(service_client: Any, tmp_path: Any, jwt_keys: JwtKeys) -> AsyncIterator[Any]:
    """``async with harness_factory(provider=None, **settings) as h``: the running service, fed through a
    real in-process bus (``h.send``: what the order service would publish)."""

    @asynccontextmanager
    async def _make(provider: PaymentProvider | None = None, **overrides: Any) -> AsyncIterator[Harness]:
        bus = InProcessBus(f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}", partitions=3, retry=FAST_RETRY)
        await bus.start()
        try:
            async with service_client(bus=bus, provider=provider, **overrides) as client:
                yield Harness(client, bus, jwt_keys, client.context.provider)
        finally:
            await bus.stop()

    yield _make


@pytest.fixture
async def harness(harness_factory: Any) -> AsyncIterator[Harness]:
    async with harness_factory() as h:
        yield h
