"""The events the notification service consumes, each decoded and handed to its use-case (``services.py``):
user events build its contact read model; user, order and payment events become notifications (recorded
here, sent after the commit by the dispatcher). Called inside the inbox transaction (docs/events.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart.users.v1 import users_pb2
from mart_common.clock import utcnow
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from notification_service import services
from notification_service.context import NotificationContext
from notification_service.domain import Kind, format_money, short_ref
from notification_service.rendering import order_context


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


async def on_order_placed(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderPlaced, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.ORDER_RECEIVED,
        order_id=event.order_id,
        context=order_context(event.order_id, event.lines, event.total_cents, event.currency),
    )


async def on_order_paid(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderPaid, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.PAYMENT_RECEIPT,
        order_id=event.order_id,
        context={
            **order_context(event.order_id, event.lines, event.total_cents, event.currency),
            "payment_id": event.payment_id,
        },
    )


async def on_order_rejected(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderRejected, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.ORDER_REJECTED,
        order_id=event.order_id,
        context={
            **order_context(event.order_id, event.lines, event.total_cents, event.currency),
            "reason": event.reason or "some items are out of stock",
        },
    )


async def on_order_cancelled(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderCancelled, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.ORDER_CANCELLED,
        order_id=event.order_id,
        context={
            **order_context(event.order_id, event.lines, event.total_cents, event.currency),
            "reason": event.reason or "cancelled",
            "was_paid": event.was_paid,
        },
    )


async def on_payment_refunded(
    ctx: NotificationContext, session: AsyncSession, event: payments_pb2.PaymentRefunded, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.PAYMENT_REFUNDED,
        order_id=event.order_id,
        context={
            "order_id": event.order_id,
            "order_ref": short_ref(event.order_id),
            "payment_id": event.payment_id,
            "amount": format_money(event.amount_cents, event.currency),
        },
    )


async def on_order_shipped(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderShipped, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.ORDER_SHIPPED,
        order_id=event.order_id,
        context={"order_id": event.order_id, "order_ref": short_ref(event.order_id)},
    )


async def on_order_delivered(
    ctx: NotificationContext, session: AsyncSession, event: orders_pb2.OrderDelivered, envelope: Envelope
) -> None:
    await services.record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=Kind.ORDER_DELIVERED,
        order_id=event.order_id,
        context={"order_id": event.order_id, "order_ref": short_ref(event.order_id)},
    )


HANDLERS: Mapping[type[Message], EventHandler] = {
    users_pb2.UserRegistered: on_user_registered,
    users_pb2.UserUpdated: on_user_updated,
    orders_pb2.OrderPlaced: on_order_placed,
    orders_pb2.OrderPaid: on_order_paid,
    orders_pb2.OrderRejected: on_order_rejected,
    orders_pb2.OrderCancelled: on_order_cancelled,
    orders_pb2.OrderShipped: on_order_shipped,
    orders_pb2.OrderDelivered: on_order_delivered,
    payments_pb2.PaymentRefunded: on_payment_refunded,
}
