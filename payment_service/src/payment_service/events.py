"""Pure builders of the events the payment service publishes (topic ``mart.payments.v1``, docs/events.md).

The use-cases record them with ``record_event(session, events.x(payment), key=str(payment.order_id))``:
keyed by order id, every event about one order keeps its order on the topic.
"""

from __future__ import annotations

from mart.payments.v1 import payments_pb2
from mart_common.clock import utcnow

from payment_service.models import Payment


def payment_requested(p: Payment) -> payments_pb2.PaymentRequested:
    return payments_pb2.PaymentRequested(
        payment_id=str(p.id),
        order_id=str(p.order_id),
        user_id=str(p.user_id),
        amount_cents=p.amount_cents,
        currency=p.currency,
        provider=p.provider,
        client_secret=p.client_secret or "",
        checkout_url=p.checkout_url or "",
        requested_at=p.created_at,
    )


def payment_succeeded(p: Payment) -> payments_pb2.PaymentSucceeded:
    return payments_pb2.PaymentSucceeded(
        payment_id=str(p.id),
        order_id=str(p.order_id),
        user_id=str(p.user_id),
        amount_cents=p.amount_cents,
        currency=p.currency,
        provider_payment_id=p.provider_payment_id or "",
        succeeded_at=utcnow(),
    )


def payment_failed(p: Payment, reason: str) -> payments_pb2.PaymentFailed:
    return payments_pb2.PaymentFailed(
        payment_id=str(p.id),
        order_id=str(p.order_id),
        user_id=str(p.user_id),
        reason=reason,
        failed_at=utcnow(),
    )


def payment_refunded(p: Payment) -> payments_pb2.PaymentRefunded:
    return payments_pb2.PaymentRefunded(
        payment_id=str(p.id),
        order_id=str(p.order_id),
        user_id=str(p.user_id),
        amount_cents=p.amount_cents,
        currency=p.currency,
        refunded_at=utcnow(),
    )
