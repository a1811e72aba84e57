# ruff: noqa: E402  (the sys.modules fix-up must run before the service imports)
"""Hypothesis tests for the domain rules the invariants rest on (pure functions, no I/O):

- the order state machine: any sequence of triggers from PENDING keeps the order in a status of
  docs/saga.md, final statuses are terminal, an order is paid at most once, and a payment never succeeds
  on a final order;
- payment decisions: a payment is charged (SUCCEEDED) at most once whatever the order of provider
  outcomes and duplicates; money taken for a cancelled order is refunded;
- inventory lines and low-stock crossings; order totals and request fingerprints (Idempotency-Key).
"""

from __future__ import annotations

import sys

for _pkg in ("payment_service",):
    if getattr(sys.modules.get(_pkg), "__file__", None) is None:
        sys.modules.pop(_pkg, None)

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from inventory_service.domain import Line, low_stock_crossing, merge_lines
from order_service.domain import (
    FINAL_STATUSES,
    OrderStatus,
    PricedLine,
    TransitionNotAllowed,
    Trigger,
    fingerprint,
    merge_quantities,
    next_status,
    total,
)
from payment_service.domain import CancelAction, Decision, Outcome, PaymentStatus, cancel_action, decide

FAST = settings(max_examples=300, deadline=None, derandomize=True)
DOCUMENTED_STATUSES = {"PENDING", "AWAITING_PAYMENT", "PAID", "SHIPPED", "DELIVERED", "REJECTED", "CANCELLED"}


@FAST
@given(st.lists(st.sampled_from(list(Trigger)), max_size=30))
def test_order_state_machine(triggers: list[Trigger]) -> None:
    status = OrderStatus.PENDING
    paid_times = 0
    for trigger in triggers:
        try:
            new = next_status(status, trigger)
        except TransitionNotAllowed:
            continue
        assert status not in FINAL_STATUSES, f"{status} is final but {trigger} moved it"
        assert new.value in DOCUMENTED_STATUSES
        if new is OrderStatus.PAID:
            paid_times += 1
            assert trigger is Trigger.PAYMENT_SUCCEEDED and status is OrderStatus.AWAITING_PAYMENT
        if new in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
            assert paid_times == 1, "shipped without being paid"
        status = new
    assert paid_times <= 1


@FAST
@given(st.sampled_from(list(OrderStatus)), st.sampled_from(list(Trigger)))
def test_transitions_are_total_and_explicit(status: OrderStatus, trigger: Trigger) -> None:
    try:
        new = next_status(status.value, trigger)
    except TransitionNotAllowed as exc:
        assert str(exc)  # a readable 409 detail
        return
    assert status not in FINAL_STATUSES
    if trigger is Trigger.PAYMENT_SUCCEEDED:
        assert new is OrderStatus.PAID


@FAST
@given(
    st.lists(st.tuples(st.sampled_from(list(Outcome)), st.booleans()), min_size=1, max_size=20),
)
def test_a_payment_is_charged_at_most_once(outcomes: list[tuple[Outcome, bool]]) -> None:
    """Provider outcomes arrive in any order, duplicated; cancellations may happen in between."""
    status = PaymentStatus.REQUIRES_PAYMENT
    cancelled = False
    succeeded = refunded = 0
    for outcome, cancel_now in outcomes:
        if cancel_now and not cancelled:
            cancelled = True
            action = cancel_action(status)
            if action is CancelAction.REFUND:
                status, refunded = PaymentStatus.REFUNDED, refunded + 1
            elif action is CancelAction.VOID:
                status = PaymentStatus.FAILED
        decision = decide(status, outcome, order_cancelled=cancelled)
        if decision is Decision.MARK_SUCCEEDED:
            assert not cancelled
            status, succeeded = PaymentStatus.SUCCEEDED, succeeded + 1
        elif decision is Decision.MARK_FAILED:
            status = PaymentStatus.FAILED
        elif decision is Decision.REFUND:
            status, refunded = PaymentStatus.REFUNDED, refunded + 1
    assert succeeded <= 1, "charged twice"
    assert refunded <= 1, "refunded twice"
    if cancelled:
        assert status is not PaymentStatus.SUCCEEDED, "a cancelled order kept the money"


uuids = st.uuids().map(str)


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from([str(uuid.UUID(int=i)) for i in range(5)]), st.integers(1, 100)),
        max_size=20,
    )
)
def test_merged_lines_preserve_quantities_and_are_lock_ordered(lines: list[tuple[str, int]]) -> None:
    merged = merge_lines(lines)
    assert merged == sorted(merged)
    assert len({m.product_id for m in merged}) == len(merged)
    assert sum(m.quantity for m in merged) == sum(q for _, q in lines)
    by_order = merge_quantities(lines)
    assert {str(m.product_id): m.quantity for m in merged} == by_order
    assert all(isinstance(m, Line) and m.quantity > 0 for m in merged)


@FAST
@given(st.lists(st.integers(-50, 200), min_size=1, max_size=40), st.integers(0, 50))
def test_low_stock_flag_flips_once_per_crossing(levels: list[int], threshold: int) -> None:
    low = False
    for available in levels:
        change = low_stock_crossing(available, threshold, low)
        if change is not None:
            assert change != low
            low = change
        assert low == (available < threshold)


@FAST
@given(st.lists(st.tuples(st.integers(1, 100), st.integers(1, 10_000_000)), min_size=1, max_size=50))
def test_order_total_is_exact_in_minor_units(lines: list[tuple[int, int]]) -> None:
    priced = [PricedLine(str(uuid.uuid4()), "p", q, p, "USD") for q, p in lines]
    cents, currency = total(priced)
    assert cents == sum(q * p for q, p in lines) and isinstance(cents, int) and currency == "USD"


@FAST
@given(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=10), st.booleans()), max_size=8
    )
)
def test_fingerprint_depends_only_on_content(body: dict) -> None:
    shuffled = dict(reversed(list(body.items())))
    assert fingerprint(body) == fingerprint(shuffled)
    assert fingerprint(body) != fingerprint({**body, "__extra__": 1})
