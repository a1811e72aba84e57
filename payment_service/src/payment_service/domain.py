"""Payment rules, free of any framework: statuses and how a provider outcome moves them.

Statuses only move forward (monotonic), whatever order the provider's events arrive in:

    CREATING ──intent──► REQUIRES_PAYMENT ──succeeded──► SUCCEEDED ──refund──► REFUND_PENDING ──► REFUNDED
       │                    │                                                  ▲
       │                    └──failed / order cancelled──► FAILED ──late succeeded──┘
       └──refused / retries exhausted / order cancelled──► FAILED

- ``CREATING``: the payment is recorded, the provider has not given an intent yet; the provider call runs
  outside any transaction and is retried with backoff (``payment_service.provider_calls``).
- ``REFUND_PENDING``: the refund is decided and recorded; the provider call is retried until it goes
  through (never given up: the money must go back), the last error visible on the payment.

- ``failed`` after ``succeeded`` (Stripe does not promise delivery order) is ignored: a success is
  never undone.
- ``succeeded`` for a payment already FAILED, or whose order is cancelled, is refunded at once: the
  customer is never charged for an order that will not ship; only PaymentRefunded is published, never
  PaymentSucceeded (which would mean "this order is paid").
- REFUNDED is final.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping


class PaymentStatus(enum.StrEnum):
    CREATING = "CREATING"
    REQUIRES_PAYMENT = "REQUIRES_PAYMENT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUND_PENDING = "REFUND_PENDING"
    REFUNDED = "REFUNDED"


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Decision(enum.Enum):
    MARK_SUCCEEDED = "mark_succeeded"  # publish PaymentSucceeded
    MARK_FAILED = "mark_failed"  # publish PaymentFailed
    REFUND = "refund"  # money was taken for an order that cannot be paid: refund, publish PaymentRefunded
    IGNORE = "ignore"  # stale or duplicate news


def decide(current: PaymentStatus, outcome: Outcome, *, order_cancelled: bool) -> Decision:
    """What a provider outcome does to a payment in ``current`` status."""
    if current is PaymentStatus.REQUIRES_PAYMENT:
        if outcome is Outcome.FAILED:
            return Decision.MARK_FAILED
        return Decision.REFUND if order_cancelled else Decision.MARK_SUCCEEDED
    if current is PaymentStatus.FAILED and outcome is Outcome.SUCCEEDED:
        return Decision.REFUND
    return Decision.IGNORE


class CancelAction(enum.Enum):
    REFUND = "refund"  # paid: refund, REFUNDED, PaymentRefunded
    VOID = "void"  # not paid yet: cancel the intent, FAILED "order cancelled", PaymentFailed
    NOTHING = "nothing"


def cancel_action(current: PaymentStatus) -> CancelAction:
    if current is PaymentStatus.SUCCEEDED:
        return CancelAction.REFUND
    if current in (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.CREATING):
        return CancelAction.VOID
    return CancelAction.NOTHING


ORDER_CANCELLED_REASON = "order cancelled"

# What a Stripe PaymentIntent event says about the payment it names.
OUTCOME_OF_EVENT: Mapping[str, Outcome] = {
    "payment_intent.succeeded": Outcome.SUCCEEDED,
    "payment_intent.payment_failed": Outcome.FAILED,
    "payment_intent.canceled": Outcome.FAILED,
}

# ``charge.refunded`` (fully refunded outside the mart, e.g. from the Stripe dashboard) marks a payment in
# these statuses REFUNDED: a refund we are still retrying may have gone through after all.
REFUNDED_OUTSIDE_FROM = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUND_PENDING})


def failure_reason(event_type: str, provider_message: str | None) -> str:
    """The reason a failed payment carries: the provider's message (a customer can read it), else a
    generic one."""
    if provider_message:
        return provider_message
    return "payment canceled" if event_type == "payment_intent.canceled" else "payment failed"


_PAYMENT_ID_NAMESPACE = uuid.UUID("6f1b3a52-2f0e-4d8c-9a57-0c6a3c1f7e11")


def payment_id_for(order_id: uuid.UUID) -> uuid.UUID:
    """The payment id of an order, derived from it: a retried creation sends Stripe the very same
    parameters under the same idempotency key (Stripe refuses a reused key with other parameters)."""
    return uuid.uuid5(_PAYMENT_ID_NAMESPACE, f"payment:{order_id}")
