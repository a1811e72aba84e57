"""Notifications and their deliveries: recorded with the event, sent after the commit.

Write side (:func:`record_notification`, called by the event handlers inside the inbox transaction): the
rendered notification (the in-app one) plus one PENDING delivery per outside channel the user wants.
It is fast and touches no provider, so a slow SMTP server never holds up the consumer.

Send side (:class:`Dispatcher`): woken right after a handler's commit and run every few seconds by the
retry job, it claims due deliveries, hands them to the channel's provider and records each attempt.
Claiming is a conditional UPDATE (attempt count + a lease), so two dispatchers (or two replicas) never
send the same attempt; a dispatcher that dies mid-send leaves a lease that expires and the delivery is
retried, so a crash never loses one. Failures back off exponentially; a delivery that fails permanently
or runs out of attempts is marked FAILED, with every attempt in ``delivery_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from mart_common.clock import utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.messaging import Envelope
from prometheus_client import Counter
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from notification_service.channels import DeliveryError, OutgoingMessage, Sender
from notification_service.domain import (
    DEFAULT_PREFERENCES,
    Channel,
    DeliveryStatus,
    Kind,
    Preferences,
    channels_for,
    retry_delay_s,
)
from notification_service.models import Contact, Delivery, DeliveryAttempt, Notification, Preference, as_utc
from notification_service.rendering import render
from notification_service.settings import NotificationSettings

log = structlog.get_logger(__name__)

DELIVERY_OUTCOMES = Counter(
    "mart_notification_delivery_attempts_total",
    "Delivery attempts by channel and outcome",
    ["channel", "outcome"],
)

# Set on a session that recorded deliveries: the dispatcher is woken after that session commits.
_WAKE_KEY = "mart_notification_deliveries_pending"


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        return None


async def preferences_of(session: AsyncSession, user_id: uuid.UUID) -> Preferences:
    row = await session.get(Preference, user_id)
    return Preferences(email=row.email, sms=row.sms) if row else DEFAULT_PREFERENCES


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
    uid = parse_uuid(user_id)
    if uid is None:
        log.warning("notification_without_user", event_id=envelope.id, type=envelope.type)
        return None
    contact = await session.get(Contact, uid)
    greeting = name or (contact.full_name if contact and contact.full_name else "there")
    message = render(kind, {"name": greeting, **context})
    now = utcnow()
    notification = Notification(
        user_id=uid,
        event_id=envelope.id,
        kind=kind,
        order_id=parse_uuid(order_id) if order_id else None,
        subject=message.subject[:300],
        body_text=message.text,
        body_html=message.html,
        sms_text=message.sms,
        created_at=now,
    )
    values = notification.model_dump()
    if not await insert_ignoring_duplicates(session, Notification.__table__, values):
        return None
    for channel in channels_for(await preferences_of(session, uid)):
        await insert_ignoring_duplicates(
            session,
            Delivery.__table__,
            Delivery(
                notification_id=notification.id,
                event_id=envelope.id,
                channel=channel,
                user_id=uid,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            ).model_dump(),
        )
        session.info[_WAKE_KEY] = True
    return notification


class Dispatcher:
    """Sends due deliveries through the configured providers (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        senders: Mapping[Channel, Sender],
        *,
        max_attempts: int = 8,
        backoff_initial_s: float = 5.0,
        backoff_max_s: float = 900.0,
        lease_s: float = 120.0,
        timeout_s: float = 60.0,
        batch_size: int = 50,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session_class = db.sessionmaker.class_.sync_session_class
        self._listener = self._after_commit

    @classmethod
    def from_settings(
        cls, db: Database, senders: Mapping[Channel, Sender], settings: NotificationSettings
    ) -> Dispatcher:
        return cls(
            db,
            senders,
            max_attempts=settings.delivery_max_attempts,
            backoff_initial_s=settings.delivery_backoff_initial_s,
            backoff_max_s=settings.delivery_backoff_max_s,
            lease_s=settings.delivery_lease_s,
            timeout_s=settings.delivery_timeout_s,
            batch_size=settings.delivery_batch_size,
            concurrency=settings.delivery_concurrency,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def _after_commit(self, session: Session) -> None:
        # The listener sits on the (process-wide) Session class: only our database's commits count.
        if session.bind is self.db.engine.sync_engine and session.info.pop(_WAKE_KEY, False):
            self.notify()

    def notify(self) -> None:
        """Wake the dispatcher (called after a commit that recorded deliveries)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            event.listen(self._session_class, "after_commit", self._listener)
            self._task = asyncio.create_task(self._run(), name="notification-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                event.remove(self._session_class, "after_commit", self._listener)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Deliveries left from before a restart are picked up by the first pass.
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification_dispatch_failed")
            await self._wake.wait()

    # --- sending -------------------------------------------------------------------------------

    async def dispatch_due(self) -> int:
        """Attempt every delivery that is due now (one batch at a time); returns how many were tried."""
        tried = 0
        while True:
            async with self.db.session() as session:
                due = (
                    await session.execute(
                        select(Delivery.id, Delivery.attempts)
                        .where(
                            Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= utcnow()
                        )
                        .order_by(Delivery.next_attempt_at)
                        .limit(self.batch_size)
                    )
                ).all()
            if not due:
                return tried
            results = await asyncio.gather(*(self._guarded(row.id, row.attempts) for row in due))
            attempted = sum(results)
            tried += attempted
            if attempted == 0 or len(due) < self.batch_size:
                return tried

    async def _guarded(self, delivery_id: uuid.UUID, seen_attempts: int) -> bool:
        async with self._semaphore:
            try:
                return await self.attempt(delivery_id, seen_attempts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification_delivery_crashed", delivery_id=str(delivery_id))
                return False

    async def _claim(self, delivery_id: uuid.UUID, seen_attempts: int) -> bool:
        now = utcnow()
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status == DeliveryStatus.PENDING,
                    Delivery.attempts == seen_attempts,
                    Delivery.next_attempt_at <= now,
                )
                .values(attempts=seen_attempts + 1, next_attempt_at=now + timedelta(seconds=self.lease_s))
            )
        return result.rowcount == 1

    async def attempt(self, delivery_id: uuid.UUID, seen_attempts: int) -> bool:
        """Claim and try one delivery; False when someone else claimed it first."""
        if not await self._claim(delivery_id, seen_attempts):
            return False
        number = seen_attempts + 1
        started = utcnow()
        async with self.db.session() as session:
            delivery = await session.get(Delivery, delivery_id)
            notification = await session.get(Notification, delivery.notification_id)
            contact = await session.get(Contact, delivery.user_id)
        channel = Channel(delivery.channel)
        sender = self.senders[channel]
        recipient: str | None = None
        error: DeliveryError | None = None
        skipped: str | None = None
        if contact is None:
            # The user's events travel on another topic and may not have arrived yet: retry later.
            error = DeliveryError("no contact details for this user yet")
        elif not contact.is_active:
            skipped = "the account is deactivated"
        else:
            recipient = contact.email if channel is Channel.EMAIL else contact.phone
            if not recipient:
                skipped = f"no {'email address' if channel is Channel.EMAIL else 'phone number'} on file"
        if error is None and skipped is None and recipient:
            message = OutgoingMessage(
                delivery_id=delivery.id,
                kind=notification.kind,
                to=recipient,
                to_name=contact.full_name if contact else "",
                subject=notification.subject,
                text=notification.body_text,
                html=notification.body_html,
                sms=notification.sms_text,
                created_at=as_utc(notification.created_at),
            )
            try:
                async with asyncio.timeout(self.timeout_s):
                    await sender.send(message)
            except asyncio.CancelledError:
                # Shutting down mid-send: hand the claim back so the next start retries at once
                # instead of after the lease (the provider may or may not have taken it).
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await self._release(delivery.id, number)
                raise
            except DeliveryError as exc:
                error = exc
            except TimeoutError:
                error = DeliveryError(f"{sender.provider} did not answer within {self.timeout_s}s")
            except Exception as exc:  # an unexpected provider failure is still only a failed attempt
                error = DeliveryError(f"{type(exc).__name__}: {exc}")
        await self._record(delivery, number, sender.provider, recipient, started, error, skipped)
        return True

    async def _release(self, delivery_id: uuid.UUID, number: int) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.attempts == number)
                .values(attempts=number - 1, next_attempt_at=utcnow())
            )

    async def _record(
        self,
        delivery: Delivery,
        number: int,
        provider: str,
        recipient: str | None,
        started: Any,
        error: DeliveryError | None,
        skipped: str | None,
    ) -> None:
        now = utcnow()
        values: dict[str, Any] = {"provider": provider, "recipient": recipient}
        if skipped is not None:
            outcome, values["status"], values["last_error"] = "SKIPPED", DeliveryStatus.SKIPPED, skipped
        elif error is None:
            outcome, values["status"], values["sent_at"], values["last_error"] = (
                "SENT",
                DeliveryStatus.SENT,
                now,
                None,
            )
        else:
            outcome = "ERROR"
            values["last_error"] = str(error)[:2000]
            if error.permanent or number >= self.max_attempts:
                values["status"] = DeliveryStatus.FAILED
            else:
                delay = retry_delay_s(number, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
        async with self.db.transaction() as session:
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    number=number,
                    provider=provider,
                    outcome=outcome,
                    error=values.get("last_error") if outcome != "SENT" else None,
                    started_at=started,
                    finished_at=now,
                )
            )
            # Guarded by the attempt number: a dispatcher whose lease ran out must not overwrite a newer one.
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.attempts == number)
                .values(**values)
            )
        DELIVERY_OUTCOMES.labels(delivery.channel, outcome).inc()
        log_fn = log.info if outcome != "ERROR" else log.warning
        log_fn(
            "notification_delivery_attempt",
            delivery_id=str(delivery.id),
            channel=delivery.channel,
            provider=provider,
            attempt=number,
            outcome=outcome,
            status=values.get("status", DeliveryStatus.PENDING),
            error=values.get("last_error"),
        )
