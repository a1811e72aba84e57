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

Intent creation gives up on a refusal (card declined, invalid request) or after
``provider_max_attempts`` transient failures: the payment is ``FAILED`` and ``PaymentFailed`` carries the
reason, so the order is cancelled and its stock released at once instead of waiting for the payment
window. A refund is never given up: it stays ``REFUND_PENDING`` with ``attempts`` and ``last_error``
visible and ``mart_payment_refunds_pending`` / ``mart_payment_provider_errors_total`` exported.

The work survives restarts: it is rows. A committing use-case hands its work to this process's loop in
memory (the database's after-commit hook), with a lease already taken in its own transaction, so the call
starts at once without a claiming transaction; the search for due rows (every ``provider_poll_interval_s``
and at start) picks up retries and whatever a crash left once its lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from mart_common.clock import utcnow
from mart_common.db import HANDOVER_LEASE, Database
from mart_common.outbox import record_event
from mart_common.tasks import stop_gracefully
from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service import events
from payment_service.domain import PaymentStatus, retry_delay_s
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
    session.info.setdefault(_WORK, []).append(_Claimed.of(payment, contextvars.copy_context()))


def void_after_commit(session: AsyncSession, provider_payment_id: str, payment_id: uuid.UUID) -> None:
    """Cancel a provider intent (best effort) once ``session``'s transaction commits."""
    session.info.setdefault(_VOIDS, []).append((provider_payment_id, payment_id))


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
    def of(cls, p: Payment, context: contextvars.Context | None = None) -> _Claimed:
        return cls(
            p.id, p.status, p.order_id, p.user_id, p.amount_cents, p.currency, p.provider_payment_id, context
        )


async def _intent_created(session: AsyncSession, p: Payment, intent: Intent) -> None:
    """The provider holds the payment's intent: ``REQUIRES_PAYMENT`` and ``PaymentRequested``."""
    if p.status != PaymentStatus.CREATING:
        # Cancelled while we were asking: keep the intent id (a late success is then refunded) and
        # cancel the intent.
        p.provider_payment_id = p.provider_payment_id or intent.provider_payment_id
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
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._voids: list[tuple[str, uuid.UUID]] = []
        self._fresh: list[_Claimed] = []
        self._task: asyncio.Task[None] | None = None
        db.after_commit(_WORK, self._handover)
        db.after_commit(_VOIDS, self._handover_voids)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="payment-service:provider-calls")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await stop_gracefully([self._task])
            self._task = None

    def _handover(self, work: list[_Claimed]) -> None:
        self._fresh.extend(work)
        self._wake.set()

    def _handover_voids(self, voids: list[tuple[str, uuid.UUID]]) -> None:
        self._voids.extend(voids)
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_search = 0.0  # at start: whatever a restart left
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._run_fresh()
                if loop.time() >= next_search:
                    await self.run_once()
                    next_search = loop.time() + self.poll_s
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payment_provider_calls_failed")
            if self._fresh or self._voids:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_search - loop.time()))

    async def _run_fresh(self) -> None:
        """The calls handed over by this process's committed use-cases (their lease is already taken)."""
        voids, self._voids = self._voids, []
        for provider_payment_id, payment_id in voids:
            await self.provider.cancel_intent(provider_payment_id, payment_id=payment_id)
        fresh, self._fresh = self._fresh, []
        if fresh:
            await asyncio.gather(*(asyncio.create_task(self._attempt(c), context=c.context) for c in fresh))

    # --- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Make every provider call that is due (retries, and what a crash left); returns how many
        payments were attempted."""
        await self._run_fresh()
        attempted = 0
        while not self._stopping.is_set():
            claimed = await self._claim()
            if not claimed:
                break
            attempted += len(claimed)
            await asyncio.gather(*(self._attempt(c) for c in claimed))
        await self._export_pending_refunds()
        return attempted

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        async with self.db.transaction() as session:
            rows = (
                await session.scalars(
                    select(Payment)
                    .where(
                        Payment.status.in_([PaymentStatus.CREATING, PaymentStatus.REFUND_PENDING]),
                        Payment.next_attempt_at <= now,
                    )
                    .order_by(Payment.next_attempt_at)
                    .limit(_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for p in rows:
                p.next_attempt_at = now + self.lease
            return [_Claimed.of(p) for p in rows]

    async def _attempt(self, c: _Claimed) -> None:
        if c.status == PaymentStatus.CREATING:
            await self._create(c)
        else:
            await self._refund(c)

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

    async def _intent_not_created(self, session: AsyncSession, p: Payment, error: ProviderError) -> None:
        """Retry a transient failure later (backoff); fail the payment on a refusal or the last attempt."""
        now = utcnow()
        p.attempts += 1
        p.last_error = error.message[:500]
        p.updated_at = now
        if error.transient and p.attempts < self.max_attempts:
            delay = retry_delay_s(p.attempts, base_s=self.base_s, max_s=self.max_s)
            p.next_attempt_at = now + timedelta(seconds=delay)
            log.warning(
                "payment_intent_retry",
                payment_id=str(p.id),
                attempts=p.attempts,
                retry_in_s=delay,
                error=error.message,
            )
            return
        reason = error.message
        if error.transient:
            reason = f"{error.message} (gave up after {p.attempts} attempts)"
        p.status = PaymentStatus.FAILED
        p.failure_reason = reason[:500]
        p.next_attempt_at = None
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
            delay = retry_delay_s(p.attempts, base_s=self.base_s, max_s=self.max_s)
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
