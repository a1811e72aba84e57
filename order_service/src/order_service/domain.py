"""Order rules that know no framework: the state machine of the checkout saga (docs/saga.md) and what a
transition changes, pricing (line merging, limits, availability, totals), and the fingerprint of a request
for Idempotency-Key checks (docs/api.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol


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


def rejection_reason(lines: Iterable[tuple[str, bool, int, int]]) -> str:
    """Why inventory rejected an order, line by line: (product id, the product is unknown, requested,
    available) each."""
    parts = [
        f"{product_id}: {'unknown product' if unknown else 'insufficient stock'} "
        f"(requested {requested}, available {available})"
        for product_id, unknown, requested, available in lines
    ]
    return "stock rejected: " + "; ".join(parts)


def payment_failure_reason(reason: str) -> str:
    """Why an order was cancelled when its payment failed."""
    return f"payment failed: {reason}" if reason else "payment failed"


def history_entry(status: OrderStatus, at: datetime, reason: str) -> dict[str, str]:
    return {"status": status.value, "at": at.isoformat().replace("+00:00", "Z"), "reason": reason}


@dataclass(frozen=True)
class Transition:
    """One move of an order: from ``previous`` to ``status`` at ``at`` for ``reason``."""

    previous: OrderStatus
    status: OrderStatus
    at: datetime
    reason: str
    #: The new payment deadline when this move opens the payment window; None: the deadline stays.
    payment_deadline: datetime | None = None

    @property
    def was_paid(self) -> bool:
        """Cancelled from PAID: the payment is refunded (docs/saga.md)."""
        return self.previous == OrderStatus.PAID

    @property
    def history_entry(self) -> dict[str, str]:
        return history_entry(self.status, self.at, self.reason)


def transition(
    status: OrderStatus | str,
    trigger: Trigger,
    reason: str,
    at: datetime,
    *,
    payment_window: timedelta | None = None,
) -> Transition:
    """What ``trigger`` does to an order in ``status``; raises :class:`TransitionNotAllowed`. Reserved stock
    restarts the payment window (``payment_window``) from ``at``."""
    new = next_status(status, trigger)
    deadline = at + payment_window if new == S.AWAITING_PAYMENT and payment_window is not None else None
    return Transition(OrderStatus(status), new, at, reason, deadline)


@dataclass(frozen=True)
class PricedLine:
    product_id: str
    product_name: str
    quantity: int
    unit_price_cents: int
    currency: str


#: Units of one product in one order, after duplicate lines are summed.
MAX_UNITS_PER_PRODUCT = 100


class CatalogEntry(Protocol):
    """What pricing needs of a product of the catalog read model."""

    name: str
    price_cents: int
    currency: str
    archived: bool


class MixedCurrencies(ValueError):
    pass


class TooManyUnits(ValueError):
    def __init__(self, product_ids: list[str]) -> None:
        super().__init__(f"At most {MAX_UNITS_PER_PRODUCT} units per product (duplicate lines are summed).")
        self.product_ids = product_ids


class ProductsUnavailable(ValueError):
    def __init__(self, unknown: list[str], archived: list[str]) -> None:
        super().__init__(
            "Some products cannot be ordered: "
            + "; ".join([*(f"{p} is unknown" for p in unknown), *(f"{p} is archived" for p in archived)])
        )
        self.unknown = unknown
        self.archived = archived


def merge_quantities(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Duplicate product lines are merged (quantities summed), keeping first-seen order."""
    merged: dict[str, int] = {}
    for product_id, quantity in items:
        merged[product_id] = merged.get(product_id, 0) + quantity
    return merged


def check_quantities(quantities: Mapping[str, int]) -> None:
    """Raises :class:`TooManyUnits` when a product's merged quantity is over the limit."""
    over = [pid for pid, q in quantities.items() if q > MAX_UNITS_PER_PRODUCT]
    if over:
        raise TooManyUnits(over)


def price_lines(quantities: Mapping[str, int], catalog: Mapping[str, CatalogEntry]) -> list[PricedLine]:
    """The lines priced from the catalog (never from the client); raises :class:`ProductsUnavailable` when
    a product is unknown or archived."""
    unknown = [pid for pid in quantities if pid not in catalog]
    archived = [pid for pid in quantities if pid in catalog and catalog[pid].archived]
    if unknown or archived:
        raise ProductsUnavailable(unknown, archived)
    return [
        PricedLine(pid, catalog[pid].name, q, catalog[pid].price_cents, catalog[pid].currency)
        for pid, q in quantities.items()
    ]


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
