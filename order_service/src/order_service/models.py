"""Order tables (on this service's own registry): orders, the catalog read model, idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mart_common.clock import utcnow
from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class OrderTable(SQLModel, registry=registry()):
    pass


class CatalogProduct(OrderTable, table=True):
    """The order service's read model of the catalog, built from product events (newest version wins)."""

    __tablename__ = "catalog_products"

    product_id: uuid.UUID = Field(primary_key=True)
    name: str = Field(sa_column=Column(String(300), nullable=False))
    price_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    archived: bool = False
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Order(OrderTable, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_status_deadline", "status", "payment_deadline"),
        Index("ix_orders_created", "created_at", "id"),  # everyone's orders, newest first (admins)
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID
    status: str = Field(sa_column=Column(String(20), nullable=False))
    # [{product_id, product_name, quantity, unit_price_cents}]
    items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    total_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    shipping_address: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # [{status, at, reason}]: every transition, oldest first
    history: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    payment_deadline: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    payment_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class OrderCount(OrderTable, table=True):
    """How many orders there are: the sum of ``n`` over the slots (concurrent checkouts add to different
    slots, never waiting for one row). Kept by triggers on ``orders`` (migration 0002)."""

    __tablename__ = "order_counts"

    slot: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class IdempotencyKey(OrderTable, table=True):
    """``Idempotency-Key`` of a POST /orders, scoped per user: the request's fingerprint and the response."""

    __tablename__ = "idempotency_keys"

    user_id: uuid.UUID = Field(primary_key=True)
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    order_id: uuid.UUID
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


METADATA = OrderTable.metadata
