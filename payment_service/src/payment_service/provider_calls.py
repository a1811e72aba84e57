"""Calls to the payment provider after the commit, outside any transaction, with retries
(docs/adr/0015-payment-provider-calls-after-commit.md).

A use-case (payment_service.services) only *records* the work in its transaction: a payment in
``CREATING`` (create the intent) or ``REFUND_PENDING`` (refund it), with ``next_attempt_at``.
:class:`ProviderCalls` then

1. claims due payments in a short transaction (``next_attempt_at`` pushed forward by a lease, so another
   replica — or this one after a crash — picks the payment up again only if this attempt never finishes),
2. calls the provider with no transaction open (the same idempotency key on every attempt),
3. records the result in a second transaction: the intent (``REQUIRES_PAYMENT`` + ``PaymentRequested``),
   the refund (``REFUNDED`` + ``PaymentRefunded``), or the error — retried with exponential backoff.

A payment cancelled while its intent was being created (``FAILED``, no intent recorded, still due) may have
an intent at the provider that no answer told us about: the create call is made again with the same
idempotency key, and the intent it returns is cancelled and recorded; a refusal means none exists.

Intent creation gives up on a refusal (card declined, invalid request) or after
``provider_max_attempts`` transient failures: the payment is ``FAILED`` and ``PaymentFailed`` carries the
reason, so the order is cancelled and its stock released at once instead of waiting for the payment
window. A refund is never given up: it stays ``REFUND_PENDING`` with ``attempts`` and ``last_error``
visible and ``mart_payment_refunds_pending`` / ``mart_payment_provider_errors_total`` exported.

The work survives restarts: it is rows. A committing use-case hands its work to this process's loop in
memory (``mart_common.work``), with a lease already taken in its own transaction, so the call starts at once
without a claiming transaction; the search for due rows (every ``provider_poll_interval_s`` and at start)
claims retries and whatever a crash left once its lease has run out.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from mart_common.clock import utcnow
from mart_common.db import Database
from mart_common.outbox import record_event
from mart_common.work import HANDOVER_LEASE, Handover, WorkLoop, backoff_s, claim_due, hand_over
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service import events
from payment_service.domain import PaymentStatus
from payment_service.models import Payment
from payment_service.providers import Intent, PaymentProvider, ProviderError
from payment_service.settings import PaymentSettings

log = structlog.get_logger(__name__)

PROVIDER_ERRORS = Counter(
    "mart_payment_provider_errors_total",
    "Payment provider calls that failed",
    ["operation", "kind"],  # operation: create_intent | refund; kind: transient | permanent
)
PROVIDER_GAVE_UP = Counter(
    "mart_payment_intents_failed_total", "Payments failed because the provider refused or stayed unavailable"
)
REFUNDS_PENDING = Gauge(
    "mart_payment_refunds_pending", "Refunds decided but not yet accepted by the provider"
)

_WORK = "payment_provider_work"
_VOIDS = "payment_provider_voids"
_BATCH = 20


# A use-case takes HANDOVER_LEASE for the hand-over: if this process dies before the call is made, another
# pass (any replica) takes the payment once it runs out. Calls carry idempotency keys, so an overlap with a
# still-running attempt creates nothing twice.


def work_recorded(session: AsyncSession, payment: Payment) -> None:
    """Hand ``payment``'s provider call to this process's loop once ``session``'s transaction commits.

    The call continues the work that recorded it: it runs in a copy of the current context, so its log lines
    and the event it records (``PaymentRequested``, ...) carry the request's or event's correlation id and
    trace (docs/tracing.md).
    """
    payment.next_attempt_at = utcnow() + HANDOVER_LEASE
    hand_over(session, _WORK, _Claimed.of(payment, contextvars.copy_context()))


def void_after_commit(session: AsyncSession, provider_payment_id: str, payment_id: uuid.UUID) -> None:
    """Cancel a provider intent (best effort) once ``session``'s transaction commits."""
    hand_over(session, _VOIDS, (provider_payment_id, payment_id))


def schedule_refund(session: AsyncSession, payment: Payment) -> None:
    """Record that ``payment`` must be refunded: ``REFUND_PENDING``, attempted after the commit."""
    payment.status = PaymentStatus.REFUND_PENDING
    payment.attempts = 0
    payment.last_error = None
    payment.updated_at = utcnow()
    work_recorded(session, payment)


@dataclass(frozen=True)
class _Claimed:
    id: uuid.UUID
    status: str
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: int
    currency: str
    provider_payment_id: str | None
    # The context of the use-case that handed the call over (None: found by the search).
    context: contextvars.Context | None = field(default=None, compare=False)

    @classmethod
    def of(cls, p: Any, context: contextvars.Context | None = None) -> _Claimed:
        """From a payment, or a row of its columns."""
        return cls(
            p.id, p.status, p.order_id, p.user_id, p.amount_cents, p.currency, p.provider_payment_id, context
        )


_PAYMENTS = Payment.__table__  # type: ignore[attr-defined]
_CLAIMED_COLUMNS = [
    _PAYMENTS.c[name]
    for name in ("id", "status", "order_id", "user_id", "amount_cents", "currency", "provider_payment_id")
]


async def _intent_created(session: AsyncSession, p: Payment, intent: Intent) -> None:
    """The provider holds the payment's intent: ``REQUIRES_PAYMENT`` and ``PaymentRequested``."""
    if p.status != PaymentStatus.CREATING:
        # Cancelled while we were asking: keep the intent id (a late success is then refunded) and
        # cancel the intent.
        p.provider_payment_id = p.provider_payment_id or intent.provider_payment_id
        p.next_attempt_at = None
        void_after_commit(session, intent.provider_payment_id, p.id)
        return
    p.provider_payment_id = intent.provider_payment_id
    p.client_secret = intent.client_secret
    p.checkout_url = intent.checkout_url
    p.status = PaymentStatus.REQUIRES_PAYMENT
    p.attempts += 1
    p.next_attempt_at = None
    p.last_error = None
    p.updated_at = utcnow()
    await session.flush()
    await record_event(session, events.payment_requested(p), key=str(p.order_id))


class ProviderCalls:
    """The loop that makes the provider calls recorded by use-cases (one per running payment service)."""

    def __init__(self, db: Database, provider: PaymentProvider, settings: PaymentSettings) -> None:
        self.db = db
        self.provider = provider
        self.base_s = settings.provider_retry_base_s
        self.max_s = settings.provider_retry_max_s
        self.max_attempts = settings.provider_max_attempts
        self.poll_s = settings.provider_poll_interval_s
        timeout, retries = settings.stripe_timeout_s, settings.stripe_max_network_retries
        # An attempt still running after this long is presumed dead (crash): the payment is due again.
        self.lease = timedelta(seconds=timeout * (retries + 1) + 10)
        self._loop = WorkLoop(
            "payment-service:provider-calls",
            self._round,
            backoff_initial_s=1.0,
            backoff_max_s=max(1.0, self.poll_s),
            on_failure=self._failed,
        )
        self._fresh: Handover[_Claimed] = Handover(db, _WORK, self._loop.wake)
        self._voids: Handover[tuple[str, uuid.UUID]] = Handover(db, _VOIDS, self._loop.wake)
        self._next_search = 0.0  # loop time; at start: whatever a restart left

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self._loop.running:
            self._next_search = 0.0
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _round(self) -> float:
        """The calls handed over, then the search for due ones when it is time; returns the seconds until
        the next search (0 while calls are handed over meanwhile)."""
        loop = asyncio.get_running_loop()
        await self._run_fresh()
        if loop.time() >= self._next_search:
            await self.run_once()
            self._next_search = loop.time() + self.poll_s
        if self._fresh or self._voids:
            return 0
        return max(0.0, self._next_search - loop.time())

    def _failed(self, exc: Exception, retry_in: float) -> None:
        log.error("payment_provider_calls_failed", error=repr(exc), retry_in=retry_in, exc_info=exc)

    async def _run_fresh(self) -> None:
        """The calls handed over by this process's committed use-cases (their lease is already taken)."""
        for provider_payment_id, payment_id in self._voids.take():
            await self.provider.cancel_intent(provider_payment_id, payment_id=payment_id)
        fresh = self._fresh.take()
        if fresh:
            await asyncio.gather(*(asyncio.create_task(self._attempt(c), context=c.context) for c in fresh))

    # --- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Make every provider call that is due (retries, and what a crash left); returns how many
        payments were attempted."""
        await self._run_fresh()
        attempted = 0
        while not self._loop.stopping:
            claimed = await self._claim()
            if not claimed:
                break
            attempted += len(claimed)
            await asyncio.gather(*(self._attempt(c) for c in claimed))
        await self._export_pending_refunds()
        return attempted

    async def _claim(self) -> list[_Claimed]:
        """The oldest due payments, under a lease (another replica's search skips them)."""
        async with self.db.transaction() as session:
            rows = await claim_due(
                session,
                _PAYMENTS,
                lease=self.lease,
                now=utcnow(),
                where=[
                    or_(
                        _PAYMENTS.c.status.in_([PaymentStatus.CREATING, PaymentStatus.REFUND_PENDING]),
                        # cancelled while its intent was being created: find the intent to void
                        and_(
                            _PAYMENTS.c.status == PaymentStatus.FAILED,
                            _PAYMENTS.c.provider_payment_id.is_(None),
                        ),
                    )
                ],
                limit=_BATCH,
                returning=_CLAIMED_COLUMNS,
            )
        return [_Claimed.of(row) for row in rows]

    async def _attempt(self, c: _Claimed) -> None:
        if c.status == PaymentStatus.REFUND_PENDING:
            await self._refund(c)
        else:  # CREATING, or FAILED with an intent perhaps created: the same call finds it
            await self._create(c)

    async def _create(self, c: _Claimed) -> None:
        """Ask the provider for the payment's intent, then record the answer in one transaction."""
        intent: Intent | None = None
        error: ProviderError | None = None
        try:
            intent = await self.provider.create_intent(
                payment_id=c.id,
                order_id=c.order_id,
                user_id=c.user_id,
                amount_cents=c.amount_cents,
                currency=c.currency,
            )
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # anything unexpected counts as transient: retried, then given up
            error = ProviderError(f"payment provider error: {exc}", transient=True)
        if error is not None:
            PROVIDER_ERRORS.labels("create_intent", "transient" if error.transient else "permanent").inc()
        async with self.db.transaction() as session:
            p = await session.get(Payment, c.id, with_for_update=True)
            if p is None:
                return
            if intent is not None:
                await _intent_created(session, p, intent)
            elif error is not None and p.status == PaymentStatus.CREATING:
                await self._intent_not_created(session, p, error)
            elif error is not None and p.status == PaymentStatus.FAILED and p.next_attempt_at is not None:
                self._void_search_failed(p, error)

    def _retry_later(self, p: Payment, error: ProviderError) -> bool:
        """Count the failed attempt; a transient failure before ``provider_max_attempts`` is due again after
        the backoff (True), else nothing more is tried (False)."""
        p.attempts += 1
        p.last_error = error.message[:500]
        p.updated_at = now = utcnow()
        if error.transient and p.attempts < self.max_attempts:
            delay = backoff_s(p.attempts, initial_s=self.base_s, max_s=self.max_s)
            p.next_attempt_at = now + timedelta(seconds=delay)
            log.warning(
                "payment_intent_retry",
                payment_id=str(p.id),
                status=p.status,
                attempts=p.attempts,
                retry_in_s=delay,
                error=error.message,
            )
            return True
        p.next_attempt_at = None
        return False

    def _void_search_failed(self, p: Payment, error: ProviderError) -> None:
        """A cancelled payment's search for an intent to void failed: a refusal says none exists; a transient
        failure is retried like the creation."""
        if not self._retry_later(p, error) and error.transient:
            log.warning("payment_intent_void_gave_up", payment_id=str(p.id), attempts=p.attempts)

    async def _intent_not_created(self, session: AsyncSession, p: Payment, error: ProviderError) -> None:
        """Retry a transient failure later (backoff); fail the payment on a refusal or the last attempt."""
        if self._retry_later(p, error):
            return
        reason = error.message
        if error.transient:
            reason = f"{error.message} (gave up after {p.attempts} attempts)"
        p.status = PaymentStatus.FAILED
        p.failure_reason = reason[:500]
        PROVIDER_GAVE_UP.inc()
        log.warning("payment_intent_failed", payment_id=str(p.id), attempts=p.attempts, reason=reason)
        await record_event(session, events.payment_failed(p, reason[:500]), key=str(p.order_id))

    async def _refund(self, c: _Claimed) -> None:
        refund_id: str | None = None
        error: ProviderError | None = None
        if not c.provider_payment_id:
            error = ProviderError("no provider payment to refund", transient=False)
        else:
            try:
                refund_id = await self.provider.refund(
                    c.provider_payment_id, payment_id=c.id, order_id=c.order_id
                )
            except ProviderError as exc:
                error = exc
            except Exception as exc:
                error = ProviderError(f"payment provider error: {exc}", transient=True)
        if error is not None and error.code == "charge_already_refunded":
            error = None  # refunded already (by an earlier attempt whose answer was lost, or the dashboard)
        if error is not None:
            PROVIDER_ERRORS.labels("refund", "transient" if error.transient else "permanent").inc()
        async with self.db.transaction() as session:
            p = await session.get(Payment, c.id, with_for_update=True)
            if p is None or p.status != PaymentStatus.REFUND_PENDING:
                return
            now = utcnow()
            p.attempts += 1
            p.updated_at = now
            if error is None:
                p.refund_id = refund_id or p.refund_id
                p.status = PaymentStatus.REFUNDED
                p.next_attempt_at = None
                p.last_error = None
                await record_event(session, events.payment_refunded(p), key=str(p.order_id))
                return
            # Never given up: the money must go back. Retried (capped backoff) and visible until it does.
            delay = backoff_s(p.attempts, initial_s=self.base_s, max_s=self.max_s)
            p.next_attempt_at = now + timedelta(seconds=delay)
            p.last_error = error.message[:500]
            log.error(
                "payment_refund_retry",
                payment_id=str(p.id),
                attempts=p.attempts,
                retry_in_s=delay,
                error=error.message,
            )

    async def _export_pending_refunds(self) -> None:
        async with self.db.read() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.status == PaymentStatus.REFUND_PENDING, Payment.next_attempt_at.is_not(None))
            )
        REFUNDS_PENDING.set(count or 0)
