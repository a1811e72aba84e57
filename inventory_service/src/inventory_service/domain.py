"""Inventory rules that know no framework: order lines, the reservation state machine (a transition
table, like the order's in order_service/domain.py), low-stock crossings (docs/saga.md, "The reservation")."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"  # units held: reserved += q
    COMMITTED = "COMMITTED"  # order paid: on_hand -= q, reserved -= q
    RELEASED = "RELEASED"  # order cancelled: reserved -= q
    EXPIRED = "EXPIRED"  # not paid in time: reserved -= q (a late OrderPaid takes the units if still there)
    REJECTED = "REJECTED"  # nothing was held: some line did not fit
    RESTOCKED = "RESTOCKED"  # a paid (committed) order was cancelled: on_hand += q again


class Trigger(StrEnum):
    """What moves an existing reservation: an order event (docs/saga.md) or the expiry sweep."""

    PAY = "order_paid"  # OrderPaid
    CANCEL = "order_cancelled"  # OrderCancelled
    EXPIRE = "reservation_expired"  # not paid nor cancelled within MART_RESERVATION_TTL_S


class StockEffect(StrEnum):
    """What a transition does to the stock rows of the reservation's lines (q = the line's quantity)."""

    SELL_RESERVED = "sell_reserved"  # on_hand -= q, reserved -= q: available unchanged; a "sale" movement
    # on_hand -= q, only if every line is still available (all or none, before the status moves): a
    # "sale" movement; when a line is short the transition does not happen (no overselling).
    SELL_AVAILABLE = "sell_available"
    UNRESERVE = "unreserve"  # reserved -= q
    RESTOCK = "restock"  # on_hand += q; a "restock" movement
    NONE = "none"  # the units went back already

    @property
    def changes_available(self) -> bool:
        """Whether ``on_hand - reserved`` moves, so a low-stock crossing must be checked."""
        return self in (StockEffect.SELL_AVAILABLE, StockEffect.UNRESERVE, StockEffect.RESTOCK)


@dataclass(frozen=True)
class Transition:
    to: ReservationStatus
    effect: StockEffect


R, T, E = ReservationStatus, Trigger, StockEffect

#: THE reservation state machine: (current status, trigger) → next status and what it does to the stock.
#: Anything not listed is refused (the event changes nothing: idempotent by state). A reservation is born
#: RESERVED or REJECTED from OrderPlaced (all lines fit or none is held), or RELEASED from an OrderCancelled
#: seen first (a marker, so that a late OrderPlaced reserves nothing).
TRANSITIONS: dict[tuple[ReservationStatus, Trigger], Transition] = {
    (R.RESERVED, T.PAY): Transition(R.COMMITTED, E.SELL_RESERVED),
    # Paid after the reservation expired: take the units again if they are still there.
    (R.EXPIRED, T.PAY): Transition(R.COMMITTED, E.SELL_AVAILABLE),
    (R.RESERVED, T.CANCEL): Transition(R.RELEASED, E.UNRESERVE),
    # A paid order cancelled before shipping: the units come back on the shelf.
    (R.COMMITTED, T.CANCEL): Transition(R.RESTOCKED, E.RESTOCK),
    # Cancelled after expiry: the units went back already; a late OrderPaid must not take them now.
    (R.EXPIRED, T.CANCEL): Transition(R.RELEASED, E.NONE),
    (R.RESERVED, T.EXPIRE): Transition(R.EXPIRED, E.UNRESERVE),
}


class TransitionNotAllowed(Exception):
    def __init__(self, status: ReservationStatus, trigger: Trigger) -> None:
        super().__init__(
            f"A reservation in status {status} cannot move on {trigger.value.replace('_', ' ')}."
        )
        self.status = status
        self.trigger = trigger


def transition(status: ReservationStatus | str, trigger: Trigger) -> Transition:
    """Where ``trigger`` moves a reservation in ``status``; raises :class:`TransitionNotAllowed`."""
    try:
        return TRANSITIONS[(ReservationStatus(status), trigger)]
    except KeyError:
        raise TransitionNotAllowed(ReservationStatus(status), trigger) from None


@dataclass(frozen=True)
class Movement:
    """An entry of the audit trail of on_hand (``stock_movements``) that a stock effect writes per line."""

    kind: str  # adjustment | sale | restock
    sign: int  # delta = sign * quantity
    reason: str


#: The audit-trail entry each effect that changes on_hand writes (docs/api.md, "inventory-service").
MOVEMENTS: dict[StockEffect, Movement] = {
    E.SELL_RESERVED: Movement("sale", -1, "order paid"),
    E.SELL_AVAILABLE: Movement("sale", -1, "order paid after its reservation expired"),
    E.RESTOCK: Movement("restock", 1, "paid order cancelled before shipping"),
}


@dataclass(frozen=True, order=True)
class Line:
    product_id: uuid.UUID
    quantity: int


def merge_lines(lines: Iterable[tuple[str | uuid.UUID, int]]) -> list[Line]:
    """One line per product (quantities summed), sorted by product id.

    The sort order is the lock order: every transaction touching several stock rows takes them in the
    same order, so concurrent reservations never deadlock on PostgreSQL.
    """
    totals: dict[uuid.UUID, int] = {}
    for product_id, quantity in lines:
        pid = product_id if isinstance(product_id, uuid.UUID) else uuid.UUID(str(product_id))
        totals[pid] = totals.get(pid, 0) + int(quantity)
    return sorted(Line(pid, q) for pid, q in totals.items())


def lines_to_json(lines: Iterable[Line]) -> list[dict[str, object]]:
    return [{"product_id": str(line.product_id), "quantity": line.quantity} for line in lines]


def lines_from_json(data: Iterable[dict[str, object]]) -> list[Line]:
    return merge_lines((str(d["product_id"]), int(d["quantity"])) for d in data)  # type: ignore[call-overload]


def low_stock_crossing(available: int, threshold: int, currently_low: bool) -> bool | None:
    """The new ``low`` flag when it changes, else None.

    StockLow is published when available falls under the threshold, once per crossing: the flag is
    set then, and cleared only when available is back at or above the threshold.
    """
    now_low = available < threshold
    if now_low == currently_low:
        return None
    return now_low
