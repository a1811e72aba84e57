"""The order state machine (docs/saga.md): every allowed transition, and every other one forbidden."""

from __future__ import annotations

import itertools

import pytest
from order_service.domain import (
    FINAL_STATUSES,
    TRANSITIONS,
    OrderStatus,
    TransitionNotAllowed,
    Trigger,
    merge_quantities,
    next_status,
    payment_failure_reason,
    rejection_reason,
)

S, T = OrderStatus, Trigger

ALLOWED = {
    (S.PENDING, T.STOCK_RESERVED): S.AWAITING_PAYMENT,
    (S.PENDING, T.STOCK_REJECTED): S.REJECTED,
    (S.PENDING, T.CANCEL): S.CANCELLED,
    (S.PENDING, T.PAYMENT_WINDOW_EXPIRED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.PAYMENT_SUCCEEDED): S.PAID,
    (S.AWAITING_PAYMENT, T.PAYMENT_FAILED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.PAYMENT_WINDOW_EXPIRED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.CANCEL): S.CANCELLED,
    (S.PAID, T.CANCEL): S.CANCELLED,
    (S.PAID, T.SHIP): S.SHIPPED,
    (S.SHIPPED, T.DELIVER): S.DELIVERED,
}
EVERY_PAIR = list(itertools.product(OrderStatus, Trigger))


def test_the_table_is_exactly_the_saga():
    assert TRANSITIONS == ALLOWED


@pytest.mark.parametrize(("status", "trigger"), list(ALLOWED), ids=lambda x: str(x))
def test_allowed_transition(status, trigger):
    assert next_status(status, trigger) == ALLOWED[(status, trigger)]
    assert next_status(status.value, trigger) == ALLOWED[(status, trigger)]  # the stored string works too


@pytest.mark.parametrize(
    ("status", "trigger"), [p for p in EVERY_PAIR if p not in ALLOWED], ids=lambda x: str(x)
)
def test_forbidden_transition(status, trigger):
    with pytest.raises(TransitionNotAllowed) as info:
        next_status(status, trigger)
    assert info.value.status == status and info.value.trigger == trigger


def test_final_statuses_have_no_way_out():
    for status in FINAL_STATUSES:
        assert not [t for (s, t) in TRANSITIONS if s == status]


def test_a_late_payment_never_revives_a_cancelled_order():
    with pytest.raises(TransitionNotAllowed):
        next_status(S.CANCELLED, T.PAYMENT_SUCCEEDED)


def test_no_cancel_after_shipping():
    for status in (S.SHIPPED, S.DELIVERED):
        with pytest.raises(TransitionNotAllowed):
            next_status(status, T.CANCEL)


def test_every_status_is_reachable_from_pending():
    seen, frontier = {S.PENDING}, [S.PENDING]
    while frontier:
        current = frontier.pop()
        for (s, _), nxt in TRANSITIONS.items():
            if s == current and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(OrderStatus)


def test_duplicate_lines_are_merged_in_first_seen_order():
    assert merge_quantities([("b", 1), ("a", 2), ("b", 3)]) == {"b": 4, "a": 2}
    assert list(merge_quantities([("b", 1), ("a", 2), ("b", 3)])) == ["b", "a"]


def test_the_reasons_say_what_went_wrong_line_by_line():
    assert rejection_reason([("p1", False, 3, 1), ("p2", True, 1, 0)]) == (
        "stock rejected: p1: insufficient stock (requested 3, available 1); "
        "p2: unknown product (requested 1, available 0)"
    )
    assert payment_failure_reason("card declined") == "payment failed: card declined"
    assert payment_failure_reason("") == "payment failed"
