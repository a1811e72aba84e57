"""The events inventory consumes (docs/events.md), each mapped to its use-case in services.py.

A handler runs in one transaction with its inbox row and is idempotent by state as well (the reservation's
status decides what an event still does: domain.TRANSITIONS).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart.products.v1 import products_pb2
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from inventory_service import services
from inventory_service.context import InventoryContext
from inventory_service.domain import merge_lines


async def on_product_created(
    ctx: InventoryContext, session: AsyncSession, event: products_pb2.ProductCreated, _: Envelope
) -> None:
    await services.create_stock(session, uuid.UUID(event.product.product_id))


async def on_order_placed(
    ctx: InventoryContext, session: AsyncSession, event: orders_pb2.OrderPlaced, _: Envelope
) -> None:
    lines = merge_lines((line.product_id, line.quantity) for line in event.lines)
    await services.reserve_for_order(session, ctx, uuid.UUID(event.order_id), lines)


async def on_order_paid(
    ctx: InventoryContext, session: AsyncSession, event: orders_pb2.OrderPaid, _: Envelope
) -> None:
    await services.commit_for_order(session, ctx, uuid.UUID(event.order_id))


async def on_order_cancelled(
    ctx: InventoryContext, session: AsyncSession, event: orders_pb2.OrderCancelled, _: Envelope
) -> None:
    lines = merge_lines((line.product_id, line.quantity) for line in event.lines)
    await services.release_for_order(session, ctx, uuid.UUID(event.order_id), lines)


HANDLERS: Mapping[type[Message], EventHandler] = {
    products_pb2.ProductCreated: on_product_created,
    orders_pb2.OrderPlaced: on_order_placed,
    orders_pb2.OrderPaid: on_order_paid,
    orders_pb2.OrderCancelled: on_order_cancelled,
}
