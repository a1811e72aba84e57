"""The payment service's HTTP models (docs/api.md); the tables are in :mod:`payment_service.models`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class PaymentPublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    amount_cents: int
    currency: str
    status: Literal["CREATING", "REQUIRES_PAYMENT", "SUCCEEDED", "FAILED", "REFUND_PENDING", "REFUNDED"]
    provider: str
    client_secret: str | None = None
    checkout_url: str | None = None
    failure_reason: str | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class SimulateRequest(BaseModel):
    outcome: Literal["succeeded", "failed"]


class SimulationAccepted(BaseModel):
    event_id: str
    event_type: str
    payment: PaymentPublic


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    duplicate: bool
