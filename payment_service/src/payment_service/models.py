"""Payment-service tables (its own registry)."""

from __future__ import annotations

import uuid
from datetime import datetime

from mart_common.clock import utcnow
from sqlalchemy import BigInteger, Column, DateTime, Integer, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class PaymentTable(SQLModel, registry=registry()):
    pass


class Payment(PaymentTable, table=True):
    """One payment per order (``order_id`` is unique): the charge the provider holds for it."""

    __tablename__ = "payments"
    id: uuid.UUID = Field(primary_key=True)
    order_id: uuid.UUID = Field(unique=True, index=True)
    user_id: uuid.UUID = Field(index=True)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(max_length=32)
    provider: str = Field(max_length=16)
    provider_payment_id: str | None = Field(default=None, max_length=255, unique=True)
    client_secret: str | None = Field(default=None, max_length=255)
    checkout_url: str | None = Field(default=None, max_length=2048)
    failure_reason: str | None = Field(default=None, max_length=500)
    refund_id: str | None = Field(default=None, max_length=255)
    # Provider work still to do (CREATING: create the intent; REFUND_PENDING: refund), retried with backoff
    # by payment_service.provider_calls: attempts made, when the next one is due, the last error.
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class KnownOrder(PaymentTable, table=True):
    """The small read model of orders this service needs: whose it is and whether it was cancelled."""

    __tablename__ = "known_orders"
    order_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID
    cancelled: bool = False
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class WebhookEvent(PaymentTable, table=True):
    """Stripe event ids already applied: a redelivered event changes nothing."""

    __tablename__ = "webhook_events"
    event_id: str = Field(sa_column=Column(String(255), primary_key=True))
    type: str = Field(max_length=255)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


METADATA = PaymentTable.metadata
