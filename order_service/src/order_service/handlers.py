"""The events order-service consumes: the catalog read model (product events) and the saga's answers
(stock and payment events). Each runs in one transaction with its inbox row; an event that no longer
fits the order's status (a late or repeated one) is ignored, not an error."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

import structlog
from google.protobuf.message import Message
from mart.payments.v1 import payments_pb2
from mart.products.v1 import products_pb2
from mart.stock.v1 import stock_pb2
from mart_common.clock import utcnow
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from order_service.checkout import advance, load_for_update
from order_service.domain import TransitionNotAllowed, Trigger
from order_service.models import CatalogProduct
from order_service.settings import OrderSettings

log = structlog.get_logger(__name__)


async def apply_product(
    session: AsyncSession, product: products_pb2.Product, *, archived: bool = False
) -> None:
    """Upsert the read model row, only if this event's ``version`` is newer than the stored one."""
    table = CatalogProduct.__table__
    values = {
        "product_id": uuid.UUID(product.product_id),
        "name": product.name,
        "price_cents": product.price_cents,
        "currency": product.currency,
        "archived": archived or product.archived,
        "version": product.version,
        "updated_at": utcnow(),
    }
    module = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["product_id"],
        set_={k: stmt.excluded[k] for k in values if k != "product_id"},
        where=table.c.version < stmt.excluded.version,  # an older or repeated event changes nothing
    )
    await session.execute(stmt)


async def on_product_created(session: AsyncSession, event: products_pb2.ProductCreated, _: Envelope) -> None:
    await apply_product(session, event.product)


async def on_product_updated(session: AsyncSession, event: products_pb2.ProductUpdated, _: Envelope) -> None:
    await apply_product(session, event.product)


async def on_product_archived(
    session: AsyncSession, event: products_pb2.ProductArchived, _: Envelope
) -> None:
    await apply_product(session, event.product, archived=True)


def build_handlers(settings: OrderSettings) -> Mapping[type[Message], EventHandler]:
    async def move(session: AsyncSession, order_id: str, trigger: Trigger, reason: str, **kw: object) -> None:
        order = await load_for_update(session, uuid.UUID(order_id))
        if order is None:
            log.warning("event_for_unknown_order", order_id=order_id, trigger=trigger.value)
            return
        try:
            await advance(session, order, trigger, reason, **kw)  # type: ignore[arg-type]
        except TransitionNotAllowed:
            # Late or repeated: e.g. a payment that succeeded after the order was cancelled (the payment
            # service refunds it), or StockReserved for an order cancelled while PENDING.
            log.info(
                "event_ignored_for_status", order_id=order_id, status=order.status, trigger=trigger.value
            )

    async def on_stock_reserved(session: AsyncSession, event: stock_pb2.StockReserved, _: Envelope) -> None:
        await move(
            session,
            event.order_id,
            Trigger.STOCK_RESERVED,
            "stock reserved",
            payment_window=timedelta(seconds=settings.payment_window_s),
        )

    async def on_stock_rejected(session: AsyncSession, event: stock_pb2.StockRejected, _: Envelope) -> None:
        parts = []
        for line in event.lines:
            why = (
                "unknown product"
                if line.reason == stock_pb2.REJECTION_REASON_UNKNOWN_PRODUCT
                else "insufficient stock"
            )
            parts.append(f"{line.product_id}: {why} (requested {line.requested}, available {line.available})")
        await move(session, event.order_id, Trigger.STOCK_REJECTED, "stock rejected: " + "; ".join(parts))

    async def on_payment_succeeded(
        session: AsyncSession, event: payments_pb2.PaymentSucceeded, _: Envelope
    ) -> None:
        await move(
            session,
            event.order_id,
            Trigger.PAYMENT_SUCCEEDED,
            "payment succeeded",
            payment_id=event.payment_id,
        )

    async def on_payment_failed(
        session: AsyncSession, event: payments_pb2.PaymentFailed, _: Envelope
    ) -> None:
        reason = f"payment failed: {event.reason}" if event.reason else "payment failed"
        await move(session, event.order_id, Trigger.PAYMENT_FAILED, reason, payment_id=event.payment_id)

    return {
        products_pb2.ProductCreated: on_product_created,
        products_pb2.ProductUpdated: on_product_updated,
        products_pb2.ProductArchived: on_product_archived,
        stock_pb2.StockReserved: on_stock_reserved,
        stock_pb2.StockRejected: on_stock_rejected,
        payments_pb2.PaymentSucceeded: on_payment_succeeded,
        payments_pb2.PaymentFailed: on_payment_failed,
    }
