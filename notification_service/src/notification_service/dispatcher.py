"""Sending deliveries after the commit, with leases and retries: the dispatcher.

The use-cases (``services.py``) record a delivery per outside channel inside the event's transaction,
already claimed for its first attempt (attempt 1, leased for ``mart_common.work.HANDOVER_LEASE``), and hand
it over, with what sending it needs, under :data:`NEW_DELIVERIES`; right after that commit the dispatcher's
loop sends it, with no query (``mart_common.work``). Deliveries due again (retries, an admin's retry,
leases that ran out) are found by the search every few seconds and claimed by a conditional UPDATE (attempt
count + a lease: ``claim_due``), so two dispatchers (or two replicas) never send the same attempt; a
dispatcher that dies mid-send (or before sending what was handed over) leaves a lease that expires and the
delivery is retried, so a crash never loses one. Failures back off exponentially; a delivery that fails
permanently or runs out of attempts is marked FAILED, with every attempt in ``delivery_attempts``
(docs/adr/0022-notifications-sent-after-commit.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from mart_common.clock import as_utc, utcnow
from mart_common.db import Database
from mart_common.work import Handover, WorkLoop, backoff_s, claim_due
from prometheus_client import Counter
from sqlalchemy import Update, bindparam, insert, select, update

from notification_service.channels import DeliveryError, OutgoingMessage, Sender
from notification_service.domain import Channel, DeliveryStatus
from notification_service.models import Contact, Delivery, DeliveryAttempt, Notification
from notification_service.settings import NotificationSettings

log = structlog.get_logger(__name__)

DELIVERY_OUTCOMES = Counter(
    "mart_notification_delivery_attempts_total",
    "Delivery attempts by channel and outcome",
    ["channel", "outcome"],
)

# ``session.info`` key of the deliveries a transaction made due (a delivery id: claimed by the dispatcher;
# a :class:`Claimed`: claimed by the transaction itself): handed to the dispatcher when (and only if) it
# commits.
NEW_DELIVERIES = "mart_notification_deliveries"


@dataclass(frozen=True, slots=True)
class Recipient:
    """The contact details a delivery goes to (the read model built from user events)."""

    full_name: str
    email: str
    phone: str | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class Claimed:
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
    contact: Recipient | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    claimed: Claimed
    provider: str
    recipient: str | None
    started: datetime
    error: DeliveryError | None
    skipped: str | None


class Dispatcher:
    """Sends due deliveries through the configured providers (see the module docstring).

    Deliveries go in batches: one conditional UPDATE claims them all, one query loads what they need, the
    providers send them side by side, and one transaction records every attempt. New deliveries come
    straight from the committing transaction (no search for them); the search for due ones covers retries
    and whatever a restart left.
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
        self._loop = WorkLoop(
            "notification-dispatcher",
            self._round,
            backoff_initial_s=1.0,
            backoff_max_s=1.0,
            on_failure=self._failed,
        )
        self._fresh: Handover[uuid.UUID | Claimed] = Handover(db, NEW_DELIVERIES, self._loop.wake)
        # Deliveries left from before a restart, or behind a failed round, are picked up by a search.
        self._search = True

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

    def start(self) -> None:
        if not self._loop.running:
            self._search = True
        self._loop.start()

    async def stop(self) -> None:
        """Finish the batch in hand (bounded), then stop; deliveries not taken yet stay PENDING and due,
        for the first search after a restart."""
        await self._loop.stop()

    async def _round(self) -> None:
        """Send what was handed over (and, after a start or a failure, search for what is due). What is due
        later (retries, expired leases) is the retry job's search: a wake only hands over."""
        if self._search:
            await self.dispatch_due()
            self._search = False
        while self._fresh and not self._loop.stopping:
            # A moment for the deliveries of concurrent handlers to join this batch.
            await asyncio.sleep(self.gather_s)
            fresh = self._fresh.take(self.batch_size)
            taken = [d for d in fresh if isinstance(d, Claimed)]
            to_claim = [d for d in fresh if not isinstance(d, Claimed)]
            if taken:
                await self._send_all(taken)
            if to_claim:
                await self._dispatch(to_claim)
        return None

    def _failed(self, exc: Exception, retry_in: float) -> None:
        log.error("notification_dispatch_failed", error=repr(exc), retry_in=retry_in, exc_info=exc)
        self._search = True  # what failed here is found again by the search for due deliveries

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
        if claimed:
            await self._send_all(claimed)
        return len(claimed)

    async def _send_all(self, claimed: list[Claimed]) -> None:
        """Send claimed deliveries side by side and record every attempt."""
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

    async def _claim(self, delivery_ids: list[uuid.UUID]) -> list[Claimed]:
        """One conditional UPDATE takes a lease on those still due (two dispatchers never both get one)."""
        async with self.db.transaction() as session:
            taken = await claim_due(
                session,
                _DELIVERIES,
                lease=timedelta(seconds=self.lease_s),
                now=utcnow(),
                where=[_DELIVERIES.c.status == DeliveryStatus.PENDING],
                ids=delivery_ids,
                count_attempt=True,
                returning=[_DELIVERIES.c.id, _DELIVERIES.c.attempts],
            )
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
            Claimed(
                id=row.id,
                number=numbers[row.id],
                channel=Channel(row.channel),
                kind=row.Notification.kind,
                subject=row.Notification.subject,
                text=row.Notification.body_text,
                html=row.Notification.body_html,
                sms=row.Notification.sms_text,
                created_at=as_utc(row.Notification.created_at),
                contact=_recipient(row.Contact),
            )
            for row in rows
        ]

    async def _send(self, claimed: Claimed) -> _Outcome:
        sender = self.senders[claimed.channel]
        started = utcnow()
        recipient, error, skipped = _recipient_of(claimed)
        if recipient is not None:
            error = await self._attempt(sender, _message(claimed, recipient))
        return _Outcome(claimed, sender.provider, recipient, started, error, skipped)

    async def _attempt(self, sender: Sender, message: OutgoingMessage) -> DeliveryError | None:
        """One provider call; any failure is only a failed attempt (None: the provider took it)."""
        try:
            async with self._semaphore, asyncio.timeout(self.timeout_s):
                await sender.send(message)
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"{sender.provider} did not answer within {self.timeout_s}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unexpected provider failure is still only a failed attempt
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        return None

    async def _release(self, claimed: list[Claimed]) -> None:
        async with self.db.transaction() as session:
            for c in claimed:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == c.id, Delivery.attempts == c.number)
                    .values(attempts=c.number - 1, next_attempt_at=utcnow())
                )

    async def _record(self, outcomes: list[_Outcome]) -> None:
        """Every attempt of the batch and each delivery's new state. On PostgreSQL one statement per
        delivery (the attempt's INSERT in a WITH of the delivery's UPDATE): a single delivery needs no
        transaction around it (one round trip, one commit), a batch gets one (one commit for all). SQLite has
        no INSERT inside WITH: one transaction with the attempts' INSERT and the UPDATEs."""
        now = utcnow()
        changes = [(o, *self._next_state(o, now)) for o in outcomes]
        if self.db.is_postgres:
            scope = self.db.autocommit() if len(changes) == 1 else self.db.transaction()
            async with scope as session:
                for o, outcome, values in changes:
                    attempt = {f"a_{k}": v for k, v in _attempt_row(o, outcome, values, now).items()}
                    params = {**attempt, **_delivery_params(o, values)}
                    await session.execute(_record_statement(tuple(values)), params)
        else:
            async with self.db.transaction() as session:
                rows = [_attempt_row(o, outcome, values, now) for o, outcome, values in changes]
                await session.execute(insert(_ATTEMPTS), rows)
                for o, _, values in changes:
                    await session.execute(_delivery_update(tuple(values)), _delivery_params(o, values))
        for o, outcome, values in changes:
            _report(o, outcome, values)

    def _next_state(self, o: _Outcome, now: datetime) -> tuple[str, dict[str, Any]]:
        """The attempt's outcome (SENT, ERROR, SKIPPED) and the delivery's new column values."""
        values: dict[str, Any] = {"provider": o.provider, "recipient": o.recipient}
        if o.skipped is not None:
            values.update(status=DeliveryStatus.SKIPPED, last_error=o.skipped)
            return "SKIPPED", values
        if o.error is None:
            values.update(status=DeliveryStatus.SENT, sent_at=now, last_error=None)
            return "SENT", values
        values["last_error"] = str(o.error)[:2000]
        if o.error.permanent or o.claimed.number >= self.max_attempts:
            values["status"] = DeliveryStatus.FAILED
        else:
            delay = backoff_s(o.claimed.number, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        return "ERROR", values


_ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
_DELIVERIES = Delivery.__table__  # type: ignore[attr-defined]


def _attempt_row(o: _Outcome, outcome: str, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "delivery_id": o.claimed.id,
        "number": o.claimed.number,
        "provider": o.provider,
        "outcome": outcome,
        "error": values.get("last_error") if outcome != "SENT" else None,
        "started_at": o.started,
        "finished_at": now,
    }


@functools.cache
def _delivery_update(columns: tuple[str, ...]) -> Update:
    """A delivery's new state (``columns``), guarded by the attempt number: a dispatcher whose lease ran out
    must not overwrite a newer attempt. Built once per set of columns; parameters from
    :func:`_delivery_params`."""
    return (
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == bindparam("d_id"), _DELIVERIES.c.attempts == bindparam("d_n"))
        .values({c: bindparam(f"d_{c}") for c in columns})
    )


def _delivery_params(o: _Outcome, values: dict[str, Any]) -> dict[str, Any]:
    return {**{f"d_{k}": v for k, v in values.items()}, "d_id": o.claimed.id, "d_n": o.claimed.number}


@functools.cache
def _record_statement(columns: tuple[str, ...]) -> Update:
    """PostgreSQL: the attempt's INSERT (parameters ``a_<attempt column>``) in a WITH of
    :func:`_delivery_update`: both in one statement."""
    attempt = insert(_ATTEMPTS).values({c: bindparam(f"a_{c}") for c in _ATTEMPT_COLUMNS}).cte("attempt")
    return _delivery_update(columns).add_cte(attempt)


_ATTEMPT_COLUMNS = (
    "id",
    "delivery_id",
    "number",
    "provider",
    "outcome",
    "error",
    "started_at",
    "finished_at",
)


def _recipient(contact: Contact | None) -> Recipient | None:
    if contact is None:
        return None
    return Recipient(contact.full_name, contact.email, contact.phone, contact.is_active)


def _recipient_of(claimed: Claimed) -> tuple[str | None, DeliveryError | None, str | None]:
    """Where the delivery goes (recipient, None, None), or why not now (None, error, None: retried) or never
    (None, None, reason: skipped)."""
    contact = claimed.contact
    if contact is None:
        # The user's events travel on another topic and may not have arrived yet: retry later.
        return None, DeliveryError("no contact details for this user yet"), None
    if not contact.is_active:
        return None, None, "the account is deactivated"
    recipient = contact.email if claimed.channel is Channel.EMAIL else contact.phone
    if not recipient:
        what = "email address" if claimed.channel is Channel.EMAIL else "phone number"
        return None, None, f"no {what} on file"
    return recipient, None, None


def _message(claimed: Claimed, recipient: str) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=claimed.id,
        kind=claimed.kind,
        to=recipient,
        to_name=claimed.contact.full_name if claimed.contact else "",
        subject=claimed.subject,
        text=claimed.text,
        html=claimed.html,
        sms=claimed.sms,
        created_at=claimed.created_at,
    )


def _report(o: _Outcome, outcome: str, values: dict[str, Any]) -> None:
    """The attempt's metric and log line."""
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
