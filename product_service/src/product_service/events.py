"""Builders of the events the product service publishes on ``mart.products.v1`` (key = product id;
docs/events.md).

Every event carries the product's full snapshot and its ``version``, so consumers keep read models
without asking back, and ignore an event whose version is not newer than what they hold.
"""

from __future__ import annotations

from mart.products.v1 import products_pb2
from mart_common.clock import utcnow

from product_service.models import Product


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


def product_created(product: Product) -> products_pb2.ProductCreated:
    event = products_pb2.ProductCreated(product=snapshot(product))
    event.occurred_at.FromDatetime(utcnow())
    return event


def product_updated(product: Product) -> products_pb2.ProductUpdated:
    event = products_pb2.ProductUpdated(product=snapshot(product))
    event.occurred_at.FromDatetime(utcnow())
    return event


def product_archived(product: Product) -> products_pb2.ProductArchived:
    event = products_pb2.ProductArchived(product=snapshot(product))
    event.occurred_at.FromDatetime(utcnow())
    return event
