"""Builders of the events the product service publishes on ``mart.products.v1`` (key = product id).

Every event carries the product's full snapshot and its ``version``, so consumers keep read models
without asking back, and ignore an event whose version is not newer than what they hold.
"""

from __future__ import annotations

from mart.products.v1 import products_pb2
from mart_common.outbox import record_event
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.models import Product, utcnow

SOURCE = "product-service"


def snapshot(product: Product) -> products_pb2.Product:
    message = products_pb2.Product(
        product_id=str(product.id),
        sku=product.sku,
        name=product.name,
        description=product.description,
        price_cents=product.price_cents,
        currency=product.currency,
        category_id=str(product.category_id) if product.category_id else "",
        archived=product.archived,
        version=product.version,
    )
    message.updated_at.FromDatetime(product.updated_at)
    return message


async def _record(session: AsyncSession, event_class: type, product: Product) -> None:
    event = event_class(product=snapshot(product))
    event.occurred_at.FromDatetime(utcnow())
    await record_event(session, event, key=str(product.id), source=SOURCE)


async def product_created(session: AsyncSession, product: Product) -> None:
    await _record(session, products_pb2.ProductCreated, product)


async def product_updated(session: AsyncSession, product: Product) -> None:
    await _record(session, products_pb2.ProductUpdated, product)


async def product_archived(session: AsyncSession, product: Product) -> None:
    await _record(session, products_pb2.ProductArchived, product)
