"""The reservation state machine as a table: what each order event or the expiry sweep may still do."""

from __future__ import annotations

import pytest
from inventory_service.domain import (
    TRANSITIONS,
    ReservationStatus,
    StockEffect,
    Transition,
    TransitionNotAllowed,
    Trigger,
    transition,
)

R, T, E = ReservationStatus, Trigger, StockEffect


def test_the_paths_of_a_reservation():
    assert transition(R.RESERVED, T.PAY) == Transition(R.COMMITTED, E.SELL_RESERVED)
    assert transition(R.EXPIRED, T.PAY) == Transition(R.COMMITTED, E.SELL_AVAILABLE)
    assert transition(R.RESERVED, T.CANCEL) == Transition(R.RELEASED, E.UNRESERVE)
    assert transition(R.COMMITTED, T.CANCEL) == Transition(R.RESTOCKED, E.RESTOCK)
    assert transition("EXPIRED", T.CANCEL) == Transition(R.RELEASED, E.NONE)
    assert transition(R.RESERVED, T.EXPIRE) == Transition(R.EXPIRED, E.UNRESERVE)


@pytest.mark.parametrize("status", [R.REJECTED, R.RELEASED, R.RESTOCKED])
@pytest.mark.parametrize("trigger", list(Trigger))
def test_final_statuses_refuse_every_trigger(status, trigger):
    with pytest.raises(TransitionNotAllowed):
        transition(status, trigger)


def test_a_second_payment_or_expiry_changes_nothing():
    for status, trigger in [(R.COMMITTED, T.PAY), (R.EXPIRED, T.EXPIRE), (R.COMMITTED, T.EXPIRE)]:
        assert (status, trigger) not in TRANSITIONS
        with pytest.raises(TransitionNotAllowed, match="cannot move on"):
            transition(status, trigger)


def test_low_stock_is_checked_exactly_when_available_moves():
    assert {e for e in StockEffect if e.changes_available} == {E.SELL_AVAILABLE, E.UNRESERVE, E.RESTOCK}
