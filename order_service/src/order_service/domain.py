"""Order rules that know no framework: the state machine of the checkout saga (SPEC §7), line merging,
totals, and the fingerprint of a request for Idempotency-Key checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class Trigger(StrEnum):
    """What moves an order: an event from another service, a customer/admin action, or the clock."""

    STOCK_RESERVED = "stock_reserved"
    STOCK_REJECTED = "stock_rejected"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_WINDOW_EXPIRED = "payment_window_expired"
    CANCEL = "cancel"
    SHIP = "ship"
    DELIVER = "deliver"


S, T = OrderStatus, Trigger

#: THE state machine: (current status, trigger) → next status. Anything not listed is forbidden.
TRANSITIONS: dict[tuple[OrderStatus, Trigger], OrderStatus] = {
    (S.PENDING, T.STOCK_RESERVED): S.AWAITING_PAYMENT,
    (S.PENDING, T.STOCK_REJECTED): S.REJECTED,
    (S.PENDING, T.CANCEL): S.CANCELLED,
    # Inventory never answered within the window: the order does not wait forever.
    (S.PENDING, T.PAYMENT_WINDOW_EXPIRED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.PAYMENT_SUCCEEDED): S.PAID,
    (S.AWAITING_PAYMENT, T.PAYMENT_FAILED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.PAYMENT_WINDOW_EXPIRED): S.CANCELLED,
    (S.AWAITING_PAYMENT, T.CANCEL): S.CANCELLED,
    # Cancelling a paid order (before shipping) refunds the payment and restocks the units.
    (S.PAID, T.CANCEL): S.CANCELLED,
    (S.PAID, T.SHIP): S.SHIPPED,
    (S.SHIPPED, T.DELIVER): S.DELIVERED,
}

FINAL_STATUSES = frozenset({S.DELIVERED, S.REJECTED, S.CANCELLED})
#: Statuses whose payment window the scheduled check watches.
WAITING_FOR_PAYMENT = (S.PENDING, S.AWAITING_PAYMENT)


class TransitionNotAllowed(Exception):
    def __init__(self, status: OrderStatus, trigger: Trigger) -> None:
        super().__init__(f"An order in status {status} cannot {trigger.value.replace('_', ' ')}.")
        self.status = status
        self.trigger = trigger


def next_status(status: OrderStatus | str, trigger: Trigger) -> OrderStatus:
    """The status ``trigger`` moves an order in ``status`` to; raises :class:`TransitionNotAllowed`."""
    try:
        return TRANSITIONS[(OrderStatus(status), trigger)]
    except KeyError:
        raise TransitionNotAllowed(OrderStatus(status), trigger) from None


def history_entry(status: OrderStatus, at: datetime, reason: str) -> dict[str, str]:
    return {"status": status.value, "at": at.isoformat().replace("+00:00", "Z"), "reason": reason}


@dataclass(frozen=True)
class PricedLine:
    product_id: str
    product_name: str
    quantity: int
    unit_price_cents: int
    currency: str


class MixedCurrencies(ValueError):
    pass


def merge_quantities(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Duplicate product lines are merged (quantities summed), keeping first-seen order."""
    merged: dict[str, int] = {}
    for product_id, quantity in items:
        merged[product_id] = merged.get(product_id, 0) + quantity
    return merged


def total(lines: Iterable[PricedLine]) -> tuple[int, str]:
    """Total in minor units and the single currency of the lines; raises :class:`MixedCurrencies`."""
    lines = list(lines)
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise MixedCurrencies(", ".join(sorted(currencies)))
    return sum(line.quantity * line.unit_price_cents for line in lines), currencies.pop()


def fingerprint(body: Any) -> str:
    """A stable hash of a request body (after validation): same body → same fingerprint."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
