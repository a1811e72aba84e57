"""Builders of the events the payment service publishes (topic ``mart.payments.v1``, key = order id)."""

from __future__ import annotations

from mart.payments.v1 import payments_pb2
from mart_common.clock import utcnow
from mart_common.outbox import record_event
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service.models import Payment

SOURCE = "payment-service"


async def _publish(session: AsyncSession, payment: Payment, message: object) -> None:
    # Keyed by order id: every event about one order keeps its order on the topic.
    await record_event(session, message, key=str(payment.order_id), source=SOURCE)  # type: ignore[arg-type]


async def payment_requested(session: AsyncSession, p: Payment) -> None:
    await _publish(
        session,
        p,
        payments_pb2.PaymentRequested(
            payment_id=str(p.id),
            order_id=str(p.order_id),
            user_id=str(p.user_id),
            amount_cents=p.amount_cents,
            currency=p.currency,
            provider=p.provider,
            client_secret=p.client_secret or "",
            checkout_url=p.checkout_url or "",
            requested_at=p.created_at,
        ),
    )


async def payment_succeeded(session: AsyncSession, p: Payment) -> None:
    await _publish(
        session,
        p,
        payments_pb2.PaymentSucceeded(
            payment_id=str(p.id),
            order_id=str(p.order_id),
            user_id=str(p.user_id),
            amount_cents=p.amount_cents,
            currency=p.currency,
            provider_payment_id=p.provider_payment_id or "",
            succeeded_at=utcnow(),
        ),
    )


async def payment_failed(session: AsyncSession, p: Payment, reason: str) -> None:
    await _publish(
        session,
        p,
        payments_pb2.PaymentFailed(
            payment_id=str(p.id),
            order_id=str(p.order_id),
            user_id=str(p.user_id),
            reason=reason,
            failed_at=utcnow(),
        ),
    )


async def payment_refunded(session: AsyncSession, p: Payment) -> None:
    await _publish(
        session,
        p,
        payments_pb2.PaymentRefunded(
            payment_id=str(p.id),
            order_id=str(p.order_id),
            user_id=str(p.user_id),
            amount_cents=p.amount_cents,
            currency=p.currency,
            refunded_at=utcnow(),
        ),
    )
