"""The monotonic payment rules, whatever order the provider's events arrive in."""

from __future__ import annotations

import uuid

import pytest
from payment_service.domain import (
    CancelAction,
    Decision,
    Outcome,
    PaymentStatus,
    cancel_action,
    decide,
    payment_id_for,
)

S = PaymentStatus


@pytest.mark.parametrize(
    ("current", "outcome", "cancelled", "expected"),
    [
        (S.REQUIRES_PAYMENT, Outcome.SUCCEEDED, False, Decision.MARK_SUCCEEDED),
        (S.REQUIRES_PAYMENT, Outcome.FAILED, False, Decision.MARK_FAILED),
        (S.REQUIRES_PAYMENT, Outcome.SUCCEEDED, True, Decision.REFUND),
        (S.SUCCEEDED, Outcome.FAILED, False, Decision.IGNORE),  # a late failure never undoes a success
        (S.SUCCEEDED, Outcome.SUCCEEDED, False, Decision.IGNORE),
        (S.FAILED, Outcome.SUCCEEDED, False, Decision.REFUND),  # charged after we gave up: give it back
        (S.FAILED, Outcome.FAILED, False, Decision.IGNORE),
        (S.REFUNDED, Outcome.SUCCEEDED, False, Decision.IGNORE),
        (S.REFUNDED, Outcome.FAILED, True, Decision.IGNORE),
    ],
)
def test_decide(current, outcome, cancelled, expected):
    assert decide(current, outcome, order_cancelled=cancelled) is expected


def test_cancel_actions():
    assert cancel_action(S.SUCCEEDED) is CancelAction.REFUND
    assert cancel_action(S.REQUIRES_PAYMENT) is CancelAction.VOID
    assert cancel_action(S.FAILED) is CancelAction.NOTHING
    assert cancel_action(S.REFUNDED) is CancelAction.NOTHING


def test_payment_id_is_stable_per_order():
    order = uuid.uuid4()
    assert payment_id_for(order) == payment_id_for(order) != payment_id_for(uuid.uuid4())
