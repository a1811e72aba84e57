"""The events the payment service consumes (docs/events.md), each mapped to its use-case in
:mod:`payment_service.services`: ``OrderAwaitingPayment`` opens the order's payment, ``OrderCancelled``
refunds or voids it. Handlers run inside the inbox transaction (mart_common.inbox) and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service import services
from payment_service.context import PaymentContext

log = structlog.get_logger(__name__)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


async def on_order_awaiting_payment(
    ctx: PaymentContext, session: AsyncSession, event: orders_pb2.OrderAwaitingPayment, envelope: Envelope
) -> None:
    order_id, user_id = _uuid(event.order_id), _uuid(event.user_id)
    if order_id is None or user_id is None or event.total_cents <= 0:
        log.warning("order_awaiting_payment_ignored", order_id=event.order_id, reason="invalid event")
        return
    await services.open_payment(
        session,
        ctx.provider,
        order_id=order_id,
        user_id=user_id,
        amount_cents=event.total_cents,
        currency=(event.currency or "USD").upper(),
    )


async def on_order_cancelled(
    ctx: PaymentContext, session: AsyncSession, event: orders_pb2.OrderCancelled, envelope: Envelope
) -> None:
    order_id = _uuid(event.order_id)
    if order_id is None:
        return
    await services.cancel_order_payment(session, order_id=order_id, user_id=_uuid(event.user_id))


HANDLERS: Mapping[type[Message], EventHandler] = {
    orders_pb2.OrderAwaitingPayment: on_order_awaiting_payment,
    orders_pb2.OrderCancelled: on_order_cancelled,
}
