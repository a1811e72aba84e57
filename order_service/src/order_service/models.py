"""Order tables (on this service's own registry): orders, the catalog read model, idempotency keys;
and the HTTP schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from mart_common.clock import as_utc, utcnow
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator
from pydantic import Field as PField
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


# --- HTTP schemas ------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ShippingAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    line1: Text
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    city: Text
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
    country: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=2, to_upper=True)
    ] = PField(description="ISO 3166-1 alpha-2 country code.")


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: int = PField(ge=1, le=100)


class OrderCreate(BaseModel):
    """Duplicate product_ids are merged (quantities summed; the sum must stay ≤ 100)."""

    model_config = ConfigDict(extra="forbid")

    items: list[OrderItemIn] = PField(min_length=1, max_length=50)
    shipping_address: ShippingAddress


class OrderItemPublic(BaseModel):
    product_id: uuid.UUID
    product_name: str
    quantity: int
    unit_price_cents: int


class HistoryEntry(BaseModel):
    status: str
    at: datetime
    reason: str


class OrderPublic(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    items: list[OrderItemPublic]
    total_cents: int
    currency: str
    shipping_address: dict[str, Any]
    payment_deadline: datetime | None
    payment_id: str | None
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]

    @field_validator("created_at", "updated_at", "payment_deadline")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:  # SQLite hands back naive UTC datetimes
        return as_utc(v)

    @classmethod
    def of(cls, order: Order) -> OrderPublic:
        return cls.model_validate(order, from_attributes=True)
