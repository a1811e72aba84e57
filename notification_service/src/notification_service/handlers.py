"""The events the notification service consumes, each decoded and handed to its use-case (``services.py``):
user events build its contact read model; user, order and payment events become notifications (recorded
here, sent after the commit by the dispatcher). Called inside the inbox transaction (docs/events.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from mart.users.v1 import users_pb2
from mart_common.clock import utcnow
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from notification_service import services
from notification_service.context import NotificationContext
from notification_service.rendering import NOTICES


def _time(ts: Timestamp, envelope: Envelope) -> datetime:
    return ts.ToDatetime(tzinfo=utcnow().tzinfo) if ts.seconds or ts.nanos else envelope.time


async def on_user_registered(
    ctx: NotificationContext, session: AsyncSession, event: users_pb2.UserRegistered, envelope: Envelope
) -> None:
    await services.welcome_user(
        session,
        envelope,
        user_id=event.user_id,
        email=event.email,
        full_name=event.full_name,
        phone=event.phone,
        at=_time(event.registered_at, envelope),
    )


async def on_user_updated(
    ctx: NotificationContext, session: AsyncSession, event: users_pb2.UserUpdated, envelope: Envelope
) -> None:
    await services.save_contact(
        session,
        user_id=event.user_id,
        email=event.email,
        full_name=event.full_name,
        phone=event.phone,
        is_active=event.is_active,
        at=_time(event.updated_at, envelope),
    )


async def on_order_news(
    ctx: NotificationContext, session: AsyncSession, event: Message, envelope: Envelope
) -> None:
    """An order or payment event the customer is told about (``rendering.NOTICES``: which message, what
    it shows)."""
    await services.notify_customer(session, envelope, event)


HANDLERS: Mapping[type[Message], EventHandler] = {
    users_pb2.UserRegistered: on_user_registered,
    users_pb2.UserUpdated: on_user_updated,
    **dict.fromkeys(NOTICES, on_order_news),
}
