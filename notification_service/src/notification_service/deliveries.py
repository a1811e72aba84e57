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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from mart_common.clock import as_utc, utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.messaging import Envelope
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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
from notification_service.models import Contact, Delivery, DeliveryAttempt, Notification, Preference
from notification_service.rendering import render
from notification_service.settings import NotificationSettings

log = structlog.get_logger(__name__)

DELIVERY_OUTCOMES = Counter(
    "mart_notification_delivery_attempts_total",
    "Delivery attempts by channel and outcome",
    ["channel", "outcome"],
)

# The deliveries a transaction recorded: handed to the dispatcher when (and only if) it commits.
_HANDOVER = "mart_notification_deliveries"


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
        delivery = Delivery(
            notification_id=notification.id,
            event_id=envelope.id,
            channel=channel,
            user_id=uid,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        if await insert_ignoring_duplicates(session, Delivery.__table__, delivery.model_dump()):
            session.info.setdefault(_HANDOVER, []).append(delivery.id)
    return notification


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A delivery claimed for one attempt, with what sending it needs."""

    id: uuid.UUID
    number: int  # this attempt's number
    channel: Channel
    kind: str
    subject: str
    text: str
    html: str | None
    sms: str | None
    created_at: datetime
    contact: Contact | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    claimed: _Claimed
    provider: str
    recipient: str | None
    started: datetime
    error: DeliveryError | None
    skipped: str | None


class Dispatcher:
    """Sends due deliveries through the configured providers (see the module docstring).

    Deliveries go in batches: one conditional UPDATE claims them all, one query loads what they need, the
    providers send them side by side, and one transaction records every attempt. New deliveries come
    straight from the committing handler (no search for them); the search for due ones covers retries and
    whatever a restart left.
    """

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
        gather_s: float = 0.02,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.gather_s = gather_s
        self._semaphore = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._fresh: list[uuid.UUID] = []
        self._task: asyncio.Task[None] | None = None
        db.after_commit(_HANDOVER, self._handover)

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

    def _handover(self, delivery_ids: list[uuid.UUID]) -> None:
        self._fresh.extend(delivery_ids)
        self._wake.set()

    def notify(self) -> None:
        """Wake the dispatcher: look for due deliveries now."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notification-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Deliveries left from before a restart are picked up by the first pass.
        search = True
        while True:
            self._wake.clear()
            try:
                if search:
                    await self.dispatch_due()
                while self._fresh:
                    # A moment for the deliveries of concurrent handlers to join this batch.
                    await asyncio.sleep(self.gather_s)
                    fresh, self._fresh = self._fresh[: self.batch_size], self._fresh[self.batch_size :]
                    await self._dispatch(fresh)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification_dispatch_failed")
                search = True  # what failed here is found again by the search for due deliveries
                await asyncio.sleep(1.0)
                continue
            await self._wake.wait()
            search = not self._fresh  # woken by notify() (or the retry job): search

    # --- sending -------------------------------------------------------------------------------

    async def dispatch_due(self) -> int:
        """Attempt every delivery that is due now (one batch at a time); returns how many were tried."""
        tried = 0
        while True:
            async with self.db.read() as session:
                due = (
                    await session.scalars(
                        select(Delivery.id)
                        .where(
                            Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= utcnow()
                        )
                        .order_by(Delivery.next_attempt_at)
                        .limit(self.batch_size)
                    )
                ).all()
            if not due:
                return tried
            attempted = await self._dispatch(list(due))
            tried += attempted
            if attempted == 0 or len(due) < self.batch_size:
                return tried

    async def _dispatch(self, delivery_ids: list[uuid.UUID]) -> int:
        """Claim, send and record a batch; returns how many this dispatcher claimed."""
        claimed = await self._claim(delivery_ids)
        if not claimed:
            return 0
        try:
            outcomes = await asyncio.gather(*(self._send(c) for c in claimed))
        except asyncio.CancelledError:
            # Shutting down mid-send: hand the claims back so the next start retries at once instead of
            # after the lease (the provider may or may not have taken them).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._release(claimed)
            raise
        await self._record(outcomes)
        return len(claimed)

    async def _claim(self, delivery_ids: list[uuid.UUID]) -> list[_Claimed]:
        """One conditional UPDATE takes a lease on those still due (two dispatchers never both get one)."""
        now = utcnow()
        async with self.db.transaction() as session:
            taken = (
                await session.execute(
                    update(Delivery)
                    .where(
                        Delivery.id.in_(delivery_ids),
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    )
                    .values(
                        attempts=Delivery.attempts + 1, next_attempt_at=now + timedelta(seconds=self.lease_s)
                    )
                    .returning(Delivery.id, Delivery.attempts)
                    .execution_options(synchronize_session=False)
                )
            ).all()
            if not taken:
                return []
            numbers = {row.id: row.attempts for row in taken}
            rows = (
                await session.execute(
                    select(Delivery.id, Delivery.channel, Notification, Contact)
                    .join(Notification, Notification.id == Delivery.notification_id)
                    .outerjoin(Contact, Contact.user_id == Delivery.user_id)
                    .where(Delivery.id.in_(list(numbers)))
                )
            ).all()
        return [
            _Claimed(
                id=row.id,
                number=numbers[row.id],
                channel=Channel(row.channel),
                kind=row.Notification.kind,
                subject=row.Notification.subject,
                text=row.Notification.body_text,
                html=row.Notification.body_html,
                sms=row.Notification.sms_text,
                created_at=as_utc(row.Notification.created_at),
                contact=row.Contact,
            )
            for row in rows
        ]

    async def _send(self, claimed: _Claimed) -> _Outcome:
        sender = self.senders[claimed.channel]
        contact = claimed.contact
        started = utcnow()
        recipient: str | None = None
        error: DeliveryError | None = None
        skipped: str | None = None
        if contact is None:
            # The user's events travel on another topic and may not have arrived yet: retry later.
            error = DeliveryError("no contact details for this user yet")
        elif not contact.is_active:
            skipped = "the account is deactivated"
        else:
            recipient = contact.email if claimed.channel is Channel.EMAIL else contact.phone
            if not recipient:
                skipped = (
                    f"no {'email address' if claimed.channel is Channel.EMAIL else 'phone number'} on file"
                )
        if error is None and skipped is None and recipient:
            message = OutgoingMessage(
                delivery_id=claimed.id,
                kind=claimed.kind,
                to=recipient,
                to_name=contact.full_name if contact else "",
                subject=claimed.subject,
                text=claimed.text,
                html=claimed.html,
                sms=claimed.sms,
                created_at=claimed.created_at,
            )
            try:
                async with self._semaphore, asyncio.timeout(self.timeout_s):
                    await sender.send(message)
            except DeliveryError as exc:
                error = exc
            except TimeoutError:
                error = DeliveryError(f"{sender.provider} did not answer within {self.timeout_s}s")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unexpected provider failure is still only a failed attempt
                error = DeliveryError(f"{type(exc).__name__}: {exc}")
        return _Outcome(claimed, sender.provider, recipient, started, error, skipped)

    async def _release(self, claimed: list[_Claimed]) -> None:
        async with self.db.transaction() as session:
            for c in claimed:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == c.id, Delivery.attempts == c.number)
                    .values(attempts=c.number - 1, next_attempt_at=utcnow())
                )

    async def _record(self, outcomes: list[_Outcome]) -> None:
        """Every attempt of the batch and each delivery's new state, in one transaction."""
        now = utcnow()
        changes: list[tuple[_Outcome, str, dict[str, Any]]] = []
        for o in outcomes:
            values: dict[str, Any] = {"provider": o.provider, "recipient": o.recipient}
            if o.skipped is not None:
                outcome, values["status"], values["last_error"] = "SKIPPED", DeliveryStatus.SKIPPED, o.skipped
            elif o.error is None:
                outcome, values["status"], values["sent_at"], values["last_error"] = (
                    "SENT",
                    DeliveryStatus.SENT,
                    now,
                    None,
                )
            else:
                outcome = "ERROR"
                values["last_error"] = str(o.error)[:2000]
                if o.error.permanent or o.claimed.number >= self.max_attempts:
                    values["status"] = DeliveryStatus.FAILED
                else:
                    delay = retry_delay_s(
                        o.claimed.number, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s
                    )
                    values["next_attempt_at"] = now + timedelta(seconds=delay)
            changes.append((o, outcome, values))
        async with self.db.transaction() as session:
            session.add_all(
                DeliveryAttempt(
                    delivery_id=o.claimed.id,
                    number=o.claimed.number,
                    provider=o.provider,
                    outcome=outcome,
                    error=values.get("last_error") if outcome != "SENT" else None,
                    started_at=o.started,
                    finished_at=now,
                )
                for o, outcome, values in changes
            )
            for o, _, values in changes:
                # Guarded by the attempt number: a dispatcher whose lease ran out must not overwrite a
                # newer attempt.
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == o.claimed.id, Delivery.attempts == o.claimed.number)
                    .values(**values)
                )
        for o, outcome, values in changes:
            DELIVERY_OUTCOMES.labels(o.claimed.channel.value, outcome).inc()
            log_fn = log.info if outcome != "ERROR" else log.warning
            log_fn(
                "notification_delivery_attempt",
                delivery_id=str(o.claimed.id),
                channel=o.claimed.channel.value,
                provider=o.provider,
                attempt=o.claimed.number,
                outcome=outcome,
                status=values.get("status", DeliveryStatus.PENDING),
                error=values.get("last_error"),
            )
