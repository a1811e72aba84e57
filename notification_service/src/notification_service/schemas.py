"""The notification service's HTTP request and response models (docs/api.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from mart_common.clock import as_utc
from pydantic import BaseModel, ConfigDict, StrictBool

from notification_service.domain import DeliveryStatus
from notification_service.models import Delivery, Notification


class NotificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    order_id: uuid.UUID | None
    subject: str
    body: str
    created_at: datetime
    read: bool
    read_at: datetime | None

    @classmethod
    def of(cls, n: Notification) -> NotificationPublic:
        return cls(
            id=n.id,
            kind=n.kind,
            order_id=n.order_id,
            subject=n.subject,
            body=n.body_text,
            created_at=as_utc(n.created_at),
            read=n.read_at is not None,
            read_at=as_utc(n.read_at),
        )


class PreferencesPublic(BaseModel):
    email: bool
    sms: bool


class PreferencesUpdate(BaseModel):
    """Both channels, as JSON booleans (``"yes"`` or ``1`` are refused with 422)."""

    model_config = ConfigDict(extra="forbid")

    email: StrictBool
    sms: StrictBool


class DeliveryPublic(BaseModel):
    """What operators see of a delivery (admin only): where it stands and why."""

    id: uuid.UUID
    notification_id: uuid.UUID
    event_id: str
    user_id: uuid.UUID
    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    provider: str | None
    recipient: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryPublic:
        return cls(
            id=d.id,
            notification_id=d.notification_id,
            event_id=d.event_id,
            user_id=d.user_id,
            channel=d.channel,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=as_utc(d.next_attempt_at) if d.status == DeliveryStatus.PENDING else None,
            provider=d.provider,
            recipient=d.recipient,
            last_error=d.last_error,
            created_at=as_utc(d.created_at),
            sent_at=as_utc(d.sent_at),
        )
