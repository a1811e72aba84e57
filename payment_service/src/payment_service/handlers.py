"""What the payment service does on the events it hears: order events from the bus
(``OrderAwaitingPayment``, ``OrderCancelled``) and payment outcomes from the provider (Stripe webhooks).

Every function runs inside the caller's transaction (inbox or webhook de-duplication row) and never commits.
No function here calls the payment provider over the network: they record the work (a payment in
``CREATING`` or ``REFUND_PENDING``) and :mod:`payment_service.provider_calls` makes the call after the
commit, outside any transaction, with retries (docs/decisions.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart_common.clock import utcnow
from mart_common.inbox import EventHandler
from mart_common.messaging import Envelope
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service import events
from payment_service.domain import (
    ORDER_CANCELLED_REASON,
    CancelAction,
    Decision,
    Outcome,
    PaymentStatus,
    cancel_action,
    decide,
    payment_id_for,
)
from payment_service.models import KnownOrder, Payment
from payment_service.provider_calls import schedule_refund, void_after_commit, work_recorded
from payment_service.providers import PaymentProvider

log = structlog.get_logger(__name__)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


async def _payment_for_order(session: AsyncSession, order_id: uuid.UUID) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.order_id == order_id).with_for_update())


def build_handlers(provider: PaymentProvider) -> Mapping[type[Message], EventHandler]:
    async def on_order_awaiting_payment(
        session: AsyncSession, event: orders_pb2.OrderAwaitingPayment, envelope: Envelope
    ) -> None:
        order_id, user_id = _uuid(event.order_id), _uuid(event.user_id)
        if order_id is None or user_id is None or event.total_cents <= 0:
            log.warning("order_awaiting_payment_ignored", order_id=event.order_id, reason="invalid event")
            return
        order = await session.get(KnownOrder, order_id, with_for_update=True)
        if order is None:
            session.add(KnownOrder(order_id=order_id, user_id=user_id))
        elif order.cancelled:
            return  # cancelled before we heard it awaited payment: never open a charge for it
        if await _payment_for_order(session, order_id) is not None:
            return  # one payment per order (a re-published event, a replay)
        payment_id = payment_id_for(order_id)
        currency = (event.currency or "USD").upper()
        now = utcnow()
        payment = Payment(
            id=payment_id,
            order_id=order_id,
            user_id=user_id,
            amount_cents=event.total_cents,
            currency=currency,
            status=PaymentStatus.CREATING,
            provider=provider.name,
            next_attempt_at=now,  # the intent is created after the commit (provider_calls)
            created_at=now,
            updated_at=now,
        )
        session.add(payment)
        await session.flush()  # the unique order_id guards against a concurrent duplicate
        work_recorded(session, payment)

    async def on_order_cancelled(
        session: AsyncSession, event: orders_pb2.OrderCancelled, envelope: Envelope
    ) -> None:
        order_id, user_id = _uuid(event.order_id), _uuid(event.user_id)
        if order_id is None:
            return
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
            payment.next_attempt_at = None  # an intent still being created is cancelled once it exists
            _set_status(payment, PaymentStatus.FAILED, reason=ORDER_CANCELLED_REASON)
            await events.payment_failed(session, payment, ORDER_CANCELLED_REASON)

    return {
        orders_pb2.OrderAwaitingPayment: on_order_awaiting_payment,  # type: ignore[dict-item]
        orders_pb2.OrderCancelled: on_order_cancelled,  # type: ignore[dict-item]
    }


def _set_status(payment: Payment, status: PaymentStatus, *, reason: str | None = None) -> None:
    payment.status = status
    if reason is not None:
        payment.failure_reason = reason[:500]
    payment.updated_at = utcnow()


async def mark_refunded(session: AsyncSession, payment: Payment, *, refund_id: str | None = None) -> None:
    payment.refund_id = refund_id or payment.refund_id
    payment.next_attempt_at = None
    _set_status(payment, PaymentStatus.REFUNDED)
    await events.payment_refunded(session, payment)


async def apply_outcome(
    session: AsyncSession, provider: PaymentProvider, payment: Payment, outcome: Outcome, *, reason: str = ""
) -> Decision:
    """Apply a provider outcome under the monotonic rules of :func:`payment_service.domain.decide`."""
    order = await session.get(KnownOrder, payment.order_id)
    decision = decide(PaymentStatus(payment.status), outcome, order_cancelled=bool(order and order.cancelled))
    if decision is Decision.MARK_SUCCEEDED:
        _set_status(payment, PaymentStatus.SUCCEEDED)
        await events.payment_succeeded(session, payment)
    elif decision is Decision.MARK_FAILED:
        reason = reason or "payment failed"
        _set_status(payment, PaymentStatus.FAILED, reason=reason)
        await events.payment_failed(session, payment, reason)
    elif decision is Decision.REFUND:
        log.warning("late_success_refunded", payment_id=str(payment.id), order_id=str(payment.order_id))
        schedule_refund(session, payment)
    else:
        log.info(
            "stale_outcome_ignored", payment_id=str(payment.id), status=payment.status, outcome=outcome.value
        )
    return decision
