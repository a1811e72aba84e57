"""The events inventory consumes. Each handler runs in one transaction with its inbox row, and is
idempotent by state as well (the reservation's status decides what an event still does)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart.products.v1 import products_pb2
from mart_common.clock import utcnow
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from inventory_service import repository
from inventory_service.domain import merge_lines
from inventory_service.settings import InventorySettings


def build_handlers(settings: InventorySettings) -> Mapping[type[Message], EventHandler]:
    ttl = timedelta(seconds=settings.reservation_ttl_s)
    threshold = settings.low_stock_threshold

    async def on_product_created(
        session: AsyncSession, event: products_pb2.ProductCreated, _: Envelope
    ) -> None:
        await repository.create_stock(session, uuid.UUID(event.product.product_id), utcnow())

    async def on_order_placed(session: AsyncSession, event: orders_pb2.OrderPlaced, _: Envelope) -> None:
        lines = merge_lines((line.product_id, line.quantity) for line in event.lines)
        await repository.reserve(
            session, uuid.UUID(event.order_id), lines, ttl=ttl, threshold=threshold, now=utcnow()
        )

    async def on_order_paid(session: AsyncSession, event: orders_pb2.OrderPaid, _: Envelope) -> None:
        await repository.commit(session, uuid.UUID(event.order_id), threshold=threshold, now=utcnow())

    async def on_order_cancelled(
        session: AsyncSession, event: orders_pb2.OrderCancelled, _: Envelope
    ) -> None:
        await repository.release(
            session,
            uuid.UUID(event.order_id),
            threshold=threshold,
            now=utcnow(),
            cancelled_lines=merge_lines((line.product_id, line.quantity) for line in event.lines),
        )

    return {
        products_pb2.ProductCreated: on_product_created,
        orders_pb2.OrderPlaced: on_order_placed,
        orders_pb2.OrderPaid: on_order_paid,
        orders_pb2.OrderCancelled: on_order_cancelled,
    }
