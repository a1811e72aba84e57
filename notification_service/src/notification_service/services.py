"""The notification service's use-cases: what an event or a user does here.

Each takes a session already inside a transaction (the inbox transaction for events, ``TransactionDep`` for
HTTP writes) and never commits. Recording a notification is fast and touches no provider, so a slow SMTP
server never holds up the consumer: the deliveries it makes due are handed to the dispatcher after the
commit (``dispatcher.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from mart_common.clock import utcnow
from mart_common.db import insert_ignoring_duplicates, upsert
from mart_common.deps import Page
from mart_common.messaging import Envelope
from mart_common.problems import Conflict, NotFound
from mart_common.work import HANDOVER_LEASE, hand_over
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notification_service.dispatcher import NEW_DELIVERIES, Claimed, Recipient
from notification_service.domain import DEFAULT_PREFERENCES, DeliveryStatus, Kind, Preferences, channels_for
from notification_service.models import Contact, Delivery, Notification, Preference
from notification_service.rendering import NOTICES, render

log = structlog.get_logger(__name__)


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        return None


# --- events --------------------------------------------------------------------------------------


async def save_contact(
    session: AsyncSession,
    *,
    user_id: str,
    email: str,
    full_name: str,
    phone: str,
    is_active: bool,
    at: datetime,
) -> None:
    """Keep the user's contact details (the read model built from user events) as of ``at``."""
    uid = _parse_uuid(user_id)
    if uid is None or not email:
        return
    current = await session.get(Contact, uid)
    if current is not None and current.updated_at is not None:
        stored = (
            current.updated_at if current.updated_at.tzinfo else current.updated_at.replace(tzinfo=at.tzinfo)
        )
        if stored > at:
            return  # an older event replayed after a newer one: keep the newer details
    await upsert(
        session,
        Contact.__table__,
        {
            "user_id": uid,
            "email": email,
            "full_name": full_name,
            "phone": phone or None,
            "is_active": is_active,
            "updated_at": at,
        },
        keys=["user_id"],
    )


async def welcome_user(
    session: AsyncSession,
    envelope: Envelope,
    *,
    user_id: str,
    email: str,
    full_name: str,
    phone: str,
    at: datetime,
) -> None:
    """A user registered: keep their contact details and welcome them."""
    await save_contact(
        session, user_id=user_id, email=email, full_name=full_name, phone=phone, is_active=True, at=at
    )
    await record_notification(
        session,
        envelope,
        user_id=user_id,
        kind=Kind.WELCOME,
        name=full_name or None,
        context={"email": email},
    )


async def notify_customer(session: AsyncSession, envelope: Envelope, event: Any) -> Notification | None:
    """Record the notification an order or payment event becomes (its kind and context: ``NOTICES``)."""
    notice = NOTICES[type(event)]
    return await record_notification(
        session,
        envelope,
        user_id=event.user_id,
        kind=notice.kind,
        order_id=event.order_id,
        context=notice.context(event),
    )


async def record_notification(
    session: AsyncSession,
    envelope: Envelope,
    *,
    user_id: str,
    kind: Kind,
    context: Mapping[str, Any],
    order_id: str | None = None,
    name: str | None = None,
) -> Notification | None:
    """Store the in-app notification for ``envelope`` and a PENDING delivery per wanted channel.

    Idempotent by state: the notification and the deliveries are unique per event (and channel).
    Returns None when the event names no valid user or was already recorded.
    """
    uid = _parse_uuid(user_id)
    if uid is None:
        log.warning("notification_without_user", event_id=envelope.id, type=envelope.type)
        return None
    recipient, preferences = await _recipient(session, uid)
    greeting = name or (recipient.full_name if recipient else "") or "there"
    message = render(kind, {"name": greeting, **context})
    now = utcnow()
    notification = Notification(
        user_id=uid,
        event_id=envelope.id,
        kind=kind,
        order_id=_parse_uuid(order_id) if order_id else None,
        subject=message.subject[:300],
        body_text=message.text,
        body_html=message.html,
        sms_text=message.sms,
        created_at=now,
    )
    if not await insert_ignoring_duplicates(session, Notification.__table__, notification.model_dump()):
        return None
    await _record_deliveries(session, notification, recipient, preferences)
    return notification


async def _recipient(session: AsyncSession, user_id: uuid.UUID) -> tuple[Recipient | None, Preferences]:
    """The user's contact details (None if unknown yet) and channel choices, in one statement (one round
    trip per event instead of two)."""
    row = (await session.execute(_RECIPIENT, {"user_id": user_id})).one()
    wants_email, wants_sms = row.wants_email, row.wants_sms
    preferences = (
        DEFAULT_PREFERENCES if wants_email is None else Preferences(email=wants_email, sms=wants_sms)
    )
    if row.email is None:
        return None, preferences
    return Recipient(row.full_name, row.email, row.phone, row.is_active), preferences


def _recipient_statement() -> Any:
    uid = bindparam("user_id")

    def contact(column: Any, label: str) -> Any:
        return select(column).where(Contact.user_id == uid).scalar_subquery().label(label)

    def preference(column: Any, label: str) -> Any:
        return select(column).where(Preference.user_id == uid).scalar_subquery().label(label)

    return select(
        contact(Contact.full_name, "full_name"),
        contact(Contact.email, "email"),
        contact(Contact.phone, "phone"),
        contact(Contact.is_active, "is_active"),
        preference(Preference.email, "wants_email"),
        preference(Preference.sms, "wants_sms"),
    )


_RECIPIENT = _recipient_statement()  # built once: it runs for every notification


async def _record_deliveries(
    session: AsyncSession,
    notification: Notification,
    recipient: Recipient | None,
    preferences: Preferences,
) -> None:
    """A PENDING delivery of ``notification`` per outside channel its user wants, claimed for its first
    attempt by this transaction and handed to the dispatcher with what sending it needs (no claiming
    transaction, no query: docs/adr/0023-work-handed-over-after-commit.md)."""
    for channel in channels_for(preferences):
        delivery = Delivery(
            notification_id=notification.id,
            event_id=notification.event_id,
            channel=channel,
            user_id=notification.user_id,
            status=DeliveryStatus.PENDING,
            attempts=1,
            next_attempt_at=notification.created_at + HANDOVER_LEASE,
            created_at=notification.created_at,
        )
        if await insert_ignoring_duplicates(session, Delivery.__table__, delivery.model_dump()):
            claimed = Claimed(
                id=delivery.id,
                number=1,
                channel=channel,
                kind=notification.kind,
                subject=notification.subject,
                text=notification.body_text,
                html=notification.body_html,
                sms=notification.sms_text,
                created_at=notification.created_at,
                contact=recipient,
            )
            _hand_over(session, claimed)


def _hand_over(session: AsyncSession, delivery: uuid.UUID | Claimed) -> None:
    """The dispatcher sends ``delivery`` (an id: after claiming it) right after this transaction commits
    (never if it rolls back)."""
    hand_over(session, NEW_DELIVERIES, delivery)


# --- the user's notifications and preferences ----------------------------------------------------------


async def list_notifications(
    session: AsyncSession, page: Page, *, user_id: uuid.UUID, unread: bool | None
) -> tuple[list[Notification], int]:
    """The user's notifications, newest first (``unread``: only unread or only read ones); and the total."""
    conditions = [Notification.user_id == user_id]
    if unread is True:
        conditions.append(Notification.read_at.is_(None))
    elif unread is False:
        conditions.append(Notification.read_at.is_not(None))
    query = (
        select(Notification)
        .where(*conditions)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
    )
    return await page.rows(session, query, entities=True)


async def mark_read(session: AsyncSession, *, user_id: uuid.UUID, notification_id: uuid.UUID) -> Notification:
    notification = await session.get(Notification, notification_id)
    if notification is None or notification.user_id != user_id:
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
    return notification


async def get_preferences(session: AsyncSession, user_id: uuid.UUID) -> Preferences:
    """The user's channel choices (the defaults until they choose)."""
    row = await session.get(Preference, user_id)
    return Preferences(email=row.email, sms=row.sms) if row else DEFAULT_PREFERENCES


async def set_preferences(session: AsyncSession, user_id: uuid.UUID, preferences: Preferences) -> Preferences:
    await upsert(
        session,
        Preference.__table__,
        {"user_id": user_id, "email": preferences.email, "sms": preferences.sms, "updated_at": utcnow()},
        keys=["user_id"],
    )
    return preferences


# --- operators -------------------------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession, page: Page, *, status: DeliveryStatus | None, user_id: uuid.UUID | None
) -> tuple[list[Delivery], int]:
    """Deliveries, newest first, optionally of one status or one user; and the total."""
    conditions = []
    if status is not None:
        conditions.append(Delivery.status == status)
    if user_id is not None:
        conditions.append(Delivery.user_id == user_id)
    query = select(Delivery).where(*conditions).order_by(Delivery.created_at.desc(), Delivery.id.desc())
    return await page.rows(session, query, entities=True)


async def retry_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
    """Send a FAILED or SKIPPED delivery again, with a fresh set of attempts (404 unknown, 409 otherwise)."""
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]),
        )
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise NotFound("No such delivery.")
    if result.rowcount == 0:
        raise Conflict(f"The delivery is {delivery.status}; only FAILED or SKIPPED ones are retried.")
    _hand_over(session, delivery.id)
    return delivery
