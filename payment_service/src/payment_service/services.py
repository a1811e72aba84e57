"""The payment service's use-cases: what it does when an order awaits payment or is cancelled (docs/saga.md),
when the provider reports an outcome (the Stripe webhook, or its simulation with the fake provider), and
what a customer reads (docs/api.md).

Every function runs inside the caller's transaction (the inbox's for events, the route's ``TransactionDep``
for the webhook) and never commits. None calls the payment provider over the network: they record the
work (a payment in ``CREATING`` or ``REFUND_PENDING``) and :mod:`payment_service.provider_calls` makes the
call after the commit, outside any transaction, with retries
(docs/adr/0015-payment-provider-calls-after-commit.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf.message import Message
from mart_common.auth import Principal
from mart_common.clock import utcnow
from mart_common.db import insert_ignoring_duplicates
from mart_common.deps import Page
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound, Problem
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service import events
from payment_service.context import PaymentContext
from payment_service.domain import (
    ORDER_CANCELLED_REASON,
    OUTCOME_OF_EVENT,
    REFUNDED_OUTSIDE_FROM,
    CancelAction,
    Decision,
    Outcome,
    PaymentStatus,
    cancel_action,
    decide,
    failure_reason,
    payment_id_for,
)
from payment_service.models import KnownOrder, Payment, WebhookEvent
from payment_service.provider_calls import schedule_refund, void_after_commit, work_recorded
from payment_service.providers import FakeProvider, InvalidWebhook, PaymentProvider, intent_id_of

log = structlog.get_logger(__name__)


async def _publish(session: AsyncSession, payment: Payment, message: Message) -> None:
    # Keyed by order id: every event about one order keeps its order on the topic.
    await record_event(session, message, key=str(payment.order_id))


def _set_status(payment: Payment, status: PaymentStatus, *, reason: str | None = None) -> None:
    payment.status = status
    if reason is not None:
        payment.failure_reason = reason[:500]
    payment.updated_at = utcnow()


_PAYMENT_FOR_ORDER = select(Payment).where(Payment.order_id == bindparam("oid")).with_for_update()


async def _payment_for_order(session: AsyncSession, order_id: uuid.UUID) -> Payment | None:
    return await session.scalar(_PAYMENT_FOR_ORDER, {"oid": order_id})


# --- order events ------------------------------------------------------------------------------------


async def open_payment(
    session: AsyncSession,
    provider: PaymentProvider,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    amount_cents: int,
    currency: str,
) -> None:
    """An order awaits payment: record its one payment in ``CREATING``; the provider's intent is created
    after the commit (provider_calls). Nothing for an order already cancelled or already paying."""
    order = await session.get(KnownOrder, order_id, with_for_update=True)
    if order is None:
        # First word of this order: it has no payment either (a payment is only opened here, after the
        # order became known in the same transaction), so no lookup. A concurrent twin of this event
        # fails on the known order's key and is retried, then finds both rows.
        session.add(KnownOrder(order_id=order_id, user_id=user_id))
    elif order.cancelled:
        return  # cancelled before we heard it awaited payment: never open a charge for it
    elif await _payment_for_order(session, order_id) is not None:
        return  # one payment per order (a re-published event, a replay)
    now = utcnow()
    payment = Payment(
        id=payment_id_for(order_id),
        order_id=order_id,
        user_id=user_id,
        amount_cents=amount_cents,
        currency=currency,
        status=PaymentStatus.CREATING,
        provider=provider.name,
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    work_recorded(session, payment)  # its lease (next_attempt_at) goes into the INSERT
    await session.flush()  # the unique order_id guards against a concurrent duplicate


async def cancel_order_payment(
    session: AsyncSession, *, order_id: uuid.UUID, user_id: uuid.UUID | None
) -> None:
    """An order is cancelled: remember it (a payment is never opened for it later), refund what was paid,
    void what was not (``PaymentFailed`` "order cancelled")."""
    order = await session.get(KnownOrder, order_id, with_for_update=True)
    if order is None:
        if user_id is None:
            return
        session.add(KnownOrder(order_id=order_id, user_id=user_id, cancelled=True))
    else:
        order.cancelled = True
        order.updated_at = utcnow()
    payment = await _payment_for_order(session, order_id)
    if payment is None:
        return
    action = cancel_action(PaymentStatus(payment.status))
    if action is CancelAction.REFUND:
        schedule_refund(session, payment)
    elif action is CancelAction.VOID:
        if payment.provider_payment_id:
            void_after_commit(session, payment.provider_payment_id, payment.id)
            payment.next_attempt_at = None
        # Else the intent is still being created, or was created by a call whose answer never came back (a
        # cut connection, a replica killed after the call): the payment stays due, and the provider calls
        # find the intent by its idempotency key, cancel it and record it (provider_calls).
        _set_status(payment, PaymentStatus.FAILED, reason=ORDER_CANCELLED_REASON)
        await _publish(session, payment, events.payment_failed(payment, ORDER_CANCELLED_REASON))


# --- provider outcomes -------------------------------------------------------------------------------


async def apply_payment_outcome(
    session: AsyncSession, payment: Payment, outcome: Outcome, *, reason: str = ""
) -> Decision:
    """Apply a provider outcome under the monotonic rules of :func:`payment_service.domain.decide`."""
    order = await session.get(KnownOrder, payment.order_id)
    decision = decide(PaymentStatus(payment.status), outcome, order_cancelled=bool(order and order.cancelled))
    if decision is Decision.MARK_SUCCEEDED:
        _set_status(payment, PaymentStatus.SUCCEEDED)
        await _publish(session, payment, events.payment_succeeded(payment))
    elif decision is Decision.MARK_FAILED:
        reason = reason or "payment failed"
        _set_status(payment, PaymentStatus.FAILED, reason=reason)
        await _publish(session, payment, events.payment_failed(payment, reason))
    elif decision is Decision.REFUND:
        log.warning("late_success_refunded", payment_id=str(payment.id), order_id=str(payment.order_id))
        schedule_refund(session, payment)
    else:
        log.info(
            "stale_outcome_ignored", payment_id=str(payment.id), status=payment.status, outcome=outcome.value
        )
    return decision


async def mark_refunded(session: AsyncSession, payment: Payment, *, refund_id: str | None = None) -> None:
    """The provider refunded the payment: ``REFUNDED``, ``PaymentRefunded``."""
    payment.refund_id = refund_id or payment.refund_id
    payment.next_attempt_at = None
    _set_status(payment, PaymentStatus.REFUNDED)
    await _publish(session, payment, events.payment_refunded(payment))


# --- the Stripe webhook --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    event_type: str
    duplicate: bool
    effect: str


async def receive_webhook(
    session: AsyncSession,
    provider: PaymentProvider,
    payload: bytes,
    signature: str | None,
    *,
    tolerance_s: int,
    payment: Payment | None = None,
) -> WebhookResult:
    """A Stripe event (``POST /webhook``): verified by signature over the raw body (else 400), applied
    once per Stripe event id, in the caller's transaction with its effects. ``payment``: the payment the
    event is about, already locked by the caller (the simulation), instead of looking it up."""
    try:
        event = provider.verify_event(payload, signature, tolerance_s)
    except InvalidWebhook as exc:
        raise Problem(400, exc.detail, slug=exc.slug) from exc
    event_id, event_type = event["id"], event["type"]
    first = await insert_ignoring_duplicates(
        session,
        WebhookEvent.__table__,  # type: ignore[attr-defined]
        {"event_id": event_id[:255], "type": event_type[:255], "received_at": utcnow()},
    )
    if not first:
        log.info("stripe_event_duplicate", event_id=event_id, type=event_type)
        return WebhookResult(event_id, event_type, True, "duplicate")
    obj = (event.get("data") or {}).get("object") or {}
    payment = payment or await _payment_named_by(session, obj)
    if payment is None:
        log.info("stripe_event_unmatched", event_id=event_id, type=event_type)
        return WebhookResult(event_id, event_type, False, "no matching payment")
    effect = await _apply_stripe_event(session, payment, event_type, obj)
    return WebhookResult(event_id, event_type, False, effect)


async def _payment_named_by(session: AsyncSession, obj: dict[str, Any]) -> Payment | None:
    """The payment a Stripe object is about, by its PaymentIntent id (locked for the update)."""
    intent_id = intent_id_of(obj)
    if intent_id is None:
        return None
    return await session.scalar(
        select(Payment).where(Payment.provider_payment_id == intent_id).with_for_update()
    )


async def _apply_stripe_event(
    session: AsyncSession, payment: Payment, event_type: str, obj: dict[str, Any]
) -> str:
    if event_type in OUTCOME_OF_EVENT:
        message = (obj.get("last_payment_error") or {}).get("message")
        reason = failure_reason(event_type, str(message) if message else None)
        decision = await apply_payment_outcome(session, payment, OUTCOME_OF_EVENT[event_type], reason=reason)
        return decision.value
    if (
        event_type == "charge.refunded"
        and obj.get("refunded") is True
        and payment.status in REFUNDED_OUTSIDE_FROM
    ):
        # Fully refunded outside the mart (e.g. from the Stripe dashboard): record it, no provider call.
        await mark_refunded(session, payment)
        return "refunded"
    return "ignored"


# --- what customers read and do over HTTP ----------------------------------------------------------


async def _visible_payment(
    session: AsyncSession, payment_id: uuid.UUID, user: Principal, *, lock: bool = False
) -> Payment:
    payment = await session.get(Payment, payment_id, with_for_update=lock)
    if payment is None or (not user.is_admin and payment.user_id != user.user_id):
        raise NotFound("No such payment.")
    return payment


async def list_payments(
    session: AsyncSession, user: Principal, page: Page, *, order_id: uuid.UUID | None = None
) -> tuple[list[Payment], int]:
    """A page of the payments ``user`` may see (their own; an admin: all), newest first, and the total."""
    query = select(Payment)
    if not user.is_admin:
        query = query.where(Payment.user_id == user.user_id)
    if order_id is not None:
        query = query.where(Payment.order_id == order_id)
    return await page.rows(session, query.order_by(Payment.created_at.desc(), Payment.id), entities=True)


async def get_payment(session: AsyncSession, user: Principal, payment_id: uuid.UUID) -> Payment:
    """One payment, if ``user`` owns it or is an admin (others' payments do not exist: 404)."""
    return await _visible_payment(session, payment_id, user)


@dataclass(frozen=True)
class Simulated:
    event_id: str
    event_type: str
    payment: Payment


async def simulate_payment(
    session: AsyncSession, ctx: PaymentContext, user: Principal, payment_id: uuid.UUID, outcome: str
) -> Simulated:
    """Fake provider only: the customer pays (or fails to): a Stripe-format event signed with the webhook
    secret, applied by :func:`receive_webhook` in this same transaction (one transaction, the payment
    locked from the check to the effect). 409 unless the payment is ``REQUIRES_PAYMENT``."""
    provider = ctx.provider
    if not isinstance(provider, FakeProvider):
        raise NotFound("Simulation exists only with the fake payment provider.")
    payment = await _visible_payment(session, payment_id, user, lock=True)
    if payment.status != PaymentStatus.REQUIRES_PAYMENT or not payment.provider_payment_id:
        raise Conflict(f"The payment is {payment.status}, not REQUIRES_PAYMENT.", slug="payment-not-pending")
    event_id, payload, signature = provider.build_event(
        outcome=outcome,
        provider_payment_id=payment.provider_payment_id,
        payment_id=payment.id,
        order_id=payment.order_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
    )
    result = await receive_webhook(
        session,
        provider,
        payload.encode(),
        signature,
        tolerance_s=ctx.settings.webhook_tolerance_s,
        payment=payment,
    )
    return Simulated(event_id, result.event_type, payment)
