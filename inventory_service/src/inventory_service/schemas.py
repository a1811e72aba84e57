"""The HTTP request and response models of inventory-service (docs/api.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, field_validator
from pydantic import Field as PField

from inventory_service.models import Stock


class StockPublic(BaseModel):
    product_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int

    @classmethod
    def of(cls, stock: Stock) -> StockPublic:
        return cls(
            product_id=stock.product_id,
            on_hand=stock.on_hand,
            reserved=stock.reserved,
            available=stock.on_hand - stock.reserved,
        )


class AdjustmentCreate(BaseModel):
    delta: int = PField(description="Units added (>0) or removed (<0); never 0.", ge=-1_000_000, le=1_000_000)
    reason: str = PField(min_length=1, max_length=500)

    @field_validator("delta")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("delta must not be 0")
        return v

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reason must not be blank")
        return v.strip()


class MovementPublic(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    kind: str
    delta: int
    reason: str
    on_hand_after: int
    actor_id: uuid.UUID | None
    order_id: uuid.UUID | None
    created_at: datetime


class AdjustmentResult(MovementPublic):
    stock: StockPublic
