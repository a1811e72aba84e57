"""The HTTP models of the orders API (docs/api.md): the order a customer places and the order as the API
answers it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from mart_common.clock import as_utc
from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator
from pydantic import Field as PField

from order_service.models import Order

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
