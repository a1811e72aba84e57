"""Inventory rules that know no framework: order lines, reservation states, low-stock crossings."""

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
