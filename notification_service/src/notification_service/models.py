"""The notification service's tables (its own registry)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from notification_service.domain import DeliveryStatus


def _utc_column(*, nullable: bool = False, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class NotificationTable(SQLModel, registry=registry()):
    pass


class Contact(NotificationTable, table=True):
    """Read model of a user's contact details, built from UserRegistered/UserUpdated."""

    __tablename__ = "contacts"
    user_id: uuid.UUID = Field(primary_key=True)
    email: str = Field(max_length=320)
    full_name: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    is_active: bool = True
    updated_at: datetime = Field(sa_column=_utc_column())


class Preference(NotificationTable, table=True):
    """A user's channel choices; absent row = the defaults (email on, SMS off)."""

    __tablename__ = "preferences"
    user_id: uuid.UUID = Field(primary_key=True)
    email: bool = True
    sms: bool = False
    updated_at: datetime = Field(sa_column=_utc_column())


class Notification(NotificationTable, table=True):
    """One message to one user about one event: the in-app notification, rendered once."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID
    event_id: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=40)
    order_id: uuid.UUID | None = None
    subject: str = Field(max_length=300)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    sms_text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=_utc_column())
    read_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class Delivery(NotificationTable, table=True):
    """Sending one notification on one outside channel: exactly one per (event, channel)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", name="uq_deliveries_event_channel"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    notification_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    event_id: str = Field(max_length=64)
    channel: str = Field(max_length=10)
    user_id: uuid.UUID
    status: str = Field(default=DeliveryStatus.PENDING, max_length=10)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=_utc_column())
    recipient: str | None = Field(default=None, max_length=320)
    provider: str | None = Field(default=None, max_length=20)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=_utc_column())
    sent_at: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))


class DeliveryAttempt(NotificationTable, table=True):
    """One try at a delivery and what came of it."""

    __tablename__ = "delivery_attempts"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    delivery_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    number: int
    provider: str = Field(max_length=20)
    outcome: str = Field(max_length=10)  # SENT | ERROR | SKIPPED
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = Field(sa_column=_utc_column())
    finished_at: datetime = Field(sa_column=_utc_column())


METADATA = NotificationTable.metadata
