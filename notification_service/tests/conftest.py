"""Fixtures of the notification service's tests: the service on a fresh database (SQLite and PostgreSQL), an
in-process SMTP server, the events it is fed, and what it recorded (deliveries, attempts)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from mart.orders.v1 import orders_pb2
from mart.users.v1 import users_pb2
from mart_common.messaging import Envelope, inbox_table
from mart_testkit.service import envelope_of, service_fixtures
from notification_service.domain import DeliveryStatus
from notification_service.main import create_app
from notification_service.models import Delivery, DeliveryAttempt
from notification_service.settings import NotificationSettings
from sqlalchemy import func, select


class RecordingSmtpHandler:
    """An SMTP server's handler that keeps what it accepts; it can refuse the first N messages (451)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse_first = 0
        self.refuse_always: str | None = None
        self.calls = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        with self._lock:
            self.calls += 1
            if self.refuse_always:
                return self.refuse_always
            if self.calls <= self.refuse_first:
                return "451 4.3.0 Mailbox busy, try again later"
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[RecordingSmtpHandler, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd, its own thread) and its port."""
    handler = RecordingSmtpHandler()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


# service_settings(**overrides), service_client(**overrides): the running notification service, mail to .eml
# files, retries fast; senders={Channel.SMS: ...} replaces a channel's provider
service_settings, service_client = service_fixtures(
    create_app,
    NotificationSettings,
    settings={
        "email_backend": "file",
        "delivery_backoff_initial_s": 0.05,
        "delivery_backoff_max_s": 0.2,
        "delivery_retry_interval_s": 0.05,
    },
)


def user_registered(user_id: uuid.UUID, email: str = "ada@example.com", **kw: Any) -> Envelope:
    event = users_pb2.UserRegistered(
        user_id=str(user_id), email=email, full_name=kw.pop("full_name", "Ada Lovelace"), **kw
    )
    return envelope_of(event, str(user_id))


def order_paid(user_id: uuid.UUID, order_id: uuid.UUID | None = None) -> Envelope:
    order_id = order_id or uuid.uuid4()
    event = orders_pb2.OrderPaid(
        order_id=str(order_id),
        user_id=str(user_id),
        lines=[
            orders_pb2.OrderLine(
                product_id=str(uuid.uuid4()), product_name="Blue Mug", quantity=2, unit_price_cents=1999
            ),
            orders_pb2.OrderLine(
                product_id=str(uuid.uuid4()), product_name="Tea <Earl Grey>", quantity=1, unit_price_cents=550
            ),
        ],
        total_cents=4548,
        currency="USD",
        payment_id=str(uuid.uuid4()),
    )
    return envelope_of(event, str(order_id))


def order_shipped(user_id: uuid.UUID, order_id: uuid.UUID) -> Envelope:
    event = orders_pb2.OrderShipped(order_id=str(order_id), user_id=str(user_id))
    return envelope_of(event, str(order_id))


def processed(app: FastAPI, event_id: str) -> Callable[[], Any]:
    """A check for ``eventually``: the consumer has recorded ``event_id`` in its inbox."""

    async def check() -> bool:
        async with app.state.runtime.db.session() as session:
            found = await session.scalar(
                select(func.count()).select_from(inbox_table).where(inbox_table.c.event_id == event_id)
            )
        return bool(found)

    return check


def all_deliveries_done(app: FastAPI) -> Callable[[], Any]:
    """A check for ``eventually``: there are deliveries and none is PENDING (each attempted to its end)."""

    async def check() -> bool:
        rows = await deliveries(app)
        return bool(rows) and all(r.status != DeliveryStatus.PENDING for r in rows)

    return check


async def deliveries(app: FastAPI, **where: Any) -> list[Delivery]:
    async with app.state.runtime.db.session() as session:
        stmt = select(Delivery)
        for name, value in where.items():
            stmt = stmt.where(getattr(Delivery, name) == value)
        return list((await session.scalars(stmt.order_by(Delivery.created_at))).all())


async def attempts_of(app: FastAPI, delivery_id: uuid.UUID) -> list[DeliveryAttempt]:
    async with app.state.runtime.db.session() as session:
        stmt = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
        return list((await session.scalars(stmt.order_by(DeliveryAttempt.number))).all())


def text_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()
