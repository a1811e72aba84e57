"""The events order-service consumes (docs/events.md): product events feed the catalog read model, stock
and payment events are the saga's answers (docs/saga.md). Each runs in one transaction with its inbox row
and calls a use-case in ``services.py``; an event that no longer fits the order's status (a late or
repeated one) is ignored, not an error."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from google.protobuf.message import Message
from mart.payments.v1 import payments_pb2
from mart.products.v1 import products_pb2
from mart.stock.v1 import stock_pb2
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from order_service import services
from order_service.context import OrderContext
from order_service.domain import Trigger, payment_failure_reason, rejection_reason


async def on_product_created(
    _ctx: OrderContext, session: AsyncSession, event: products_pb2.ProductCreated, _: Envelope
) -> None:
    await services.apply_product(session, event.product)


async def on_product_updated(
    _ctx: OrderContext, session: AsyncSession, event: products_pb2.ProductUpdated, _: Envelope
) -> None:
    await services.apply_product(session, event.product)


async def on_product_archived(
    _ctx: OrderContext, session: AsyncSession, event: products_pb2.ProductArchived, _: Envelope
) -> None:
    await services.apply_product(session, event.product, archived=True)


async def on_stock_reserved(
    ctx: OrderContext, session: AsyncSession, event: stock_pb2.StockReserved, _: Envelope
) -> None:
    await services.move(
        session,
        uuid.UUID(event.order_id),
        Trigger.STOCK_RESERVED,
        "stock reserved",
        payment_window=timedelta(seconds=ctx.settings.payment_window_s),
    )


async def on_stock_rejected(
    _ctx: OrderContext, session: AsyncSession, event: stock_pb2.StockRejected, _: Envelope
) -> None:
    unknown = stock_pb2.REJECTION_REASON_UNKNOWN_PRODUCT
    reason = rejection_reason(
        (line.product_id, line.reason == unknown, line.requested, line.available) for line in event.lines
    )
    await services.move(session, uuid.UUID(event.order_id), Trigger.STOCK_REJECTED, reason)


async def on_payment_succeeded(
    _ctx: OrderContext, session: AsyncSession, event: payments_pb2.PaymentSucceeded, _: Envelope
) -> None:
    await services.move(
        session,
        uuid.UUID(event.order_id),
        Trigger.PAYMENT_SUCCEEDED,
        "payment succeeded",
        payment_id=event.payment_id,
    )


async def on_payment_failed(
    _ctx: OrderContext, session: AsyncSession, event: payments_pb2.PaymentFailed, _: Envelope
) -> None:
    reason = payment_failure_reason(event.reason)
    await services.move(
        session, uuid.UUID(event.order_id), Trigger.PAYMENT_FAILED, reason, payment_id=event.payment_id
    )


HANDLERS: Mapping[type[Message], EventHandler] = {
    products_pb2.ProductCreated: on_product_created,
    products_pb2.ProductUpdated: on_product_updated,
    products_pb2.ProductArchived: on_product_archived,
    stock_pb2.StockReserved: on_stock_reserved,
    stock_pb2.StockRejected: on_stock_rejected,
    payments_pb2.PaymentSucceeded: on_payment_succeeded,
    payments_pb2.PaymentFailed: on_payment_failed,
}
