"""Pure builders of the events inventory publishes (topic ``mart.stock.v1``, docs/events.md); services.py
records them in the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from mart.stock.v1 import stock_pb2

from inventory_service.domain import Line


def _stock_lines(lines: Iterable[Line]) -> list[stock_pb2.StockLine]:
    return [stock_pb2.StockLine(product_id=str(line.product_id), quantity=line.quantity) for line in lines]


def stock_reserved(
    order_id: uuid.UUID, lines: list[Line], at: datetime, expires_at: datetime
) -> stock_pb2.StockReserved:
    return stock_pb2.StockReserved(
        order_id=str(order_id), lines=_stock_lines(lines), reserved_at=at, expires_at=expires_at
    )


def stock_rejected(
    order_id: uuid.UUID, rejected: list[stock_pb2.RejectedLine], at: datetime
) -> stock_pb2.StockRejected:
    return stock_pb2.StockRejected(order_id=str(order_id), lines=rejected, rejected_at=at)


def rejected_line(line: Line, available: int, *, unknown: bool) -> stock_pb2.RejectedLine:
    return stock_pb2.RejectedLine(
        product_id=str(line.product_id),
        requested=line.quantity,
        available=max(0, available),
        reason=(
            stock_pb2.REJECTION_REASON_UNKNOWN_PRODUCT
            if unknown
            else stock_pb2.REJECTION_REASON_INSUFFICIENT_STOCK
        ),
    )


def stock_committed(order_id: uuid.UUID, lines: list[Line], at: datetime) -> stock_pb2.StockCommitted:
    return stock_pb2.StockCommitted(order_id=str(order_id), lines=_stock_lines(lines), committed_at=at)


def stock_released(
    order_id: uuid.UUID, lines: list[Line], at: datetime, *, expired: bool
) -> stock_pb2.StockReleased:
    return stock_pb2.StockReleased(
        order_id=str(order_id),
        lines=_stock_lines(lines),
        reason=(
            stock_pb2.RELEASE_REASON_RESERVATION_EXPIRED
            if expired
            else stock_pb2.RELEASE_REASON_ORDER_CANCELLED
        ),
        released_at=at,
    )


def stock_low(
    product_id: uuid.UUID, on_hand: int, reserved: int, threshold: int, at: datetime
) -> stock_pb2.StockLow:
    return stock_pb2.StockLow(
        product_id=str(product_id),
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        threshold=threshold,
        occurred_at=at,
    )
