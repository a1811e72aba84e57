"""Inventory tables, on this service's own registry (docs/shared-library.md); HTTP models: schemas.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mart_common.clock import utcnow
from sqlalchemy import JSON, CheckConstraint, Column, DateTime, Index, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class InventoryTable(SQLModel, registry=registry()):
    pass


class Stock(InventoryTable, table=True):
    """Stock of one product. ``available = on_hand - reserved``; both never negative."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_nonnegative"),
        CheckConstraint("reserved >= 0", name="ck_stock_reserved_nonnegative"),
        CheckConstraint("reserved <= on_hand", name="ck_stock_reserved_within_on_hand"),
    )

    product_id: uuid.UUID = Field(primary_key=True)
    on_hand: int = Field(default=0)
    reserved: int = Field(default=0)
    # True while available is under the low-stock threshold: StockLow goes out once per crossing.
    low: bool = Field(default=False)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class StockMovement(InventoryTable, table=True):
    """The audit trail of ``on_hand``: admin adjustments, sales (commits) and restocks (paid cancels)."""

    __tablename__ = "stock_movements"
    __table_args__ = (Index("ix_stock_movements_product", "product_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    product_id: uuid.UUID
    kind: str = Field(sa_column=Column(String(20), nullable=False))  # adjustment | sale | restock
    delta: int
    reason: str = Field(sa_column=Column(String(500), nullable=False))
    on_hand_after: int
    actor_id: uuid.UUID | None = Field(default=None)
    order_id: uuid.UUID | None = Field(default=None)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Reservation(InventoryTable, table=True):
    """What inventory holds for one order; its status makes every order event idempotent by state."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status_expires", "status", "expires_at"),)

    order_id: uuid.UUID = Field(primary_key=True)
    # RESERVED | COMMITTED | RELEASED | EXPIRED | REJECTED | RESTOCKED
    status: str = Field(sa_column=Column(String(20), nullable=False))
    lines: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


METADATA = InventoryTable.metadata
