"""Stock and reservations in the database: every change is a conditional UPDATE (never read-modify-write).

Each function runs inside the caller's transaction (a handler's inbox transaction or a route's session)
and records the events it causes in the outbox of that same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from mart_common.db import insert_ignoring_duplicates
from mart_common.outbox import record_event
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inventory_service import events
from inventory_service.domain import (
    Line,
    ReservationStatus,
    lines_from_json,
    lines_to_json,
    low_stock_crossing,
)
from inventory_service.models import Reservation, Stock, StockMovement

log = structlog.get_logger(__name__)

SOURCE = events.SOURCE


class UnknownProduct(Exception):
    """No stock row for this product (inventory has not seen its ProductCreated)."""


class StockConflict(Exception):
    """The change would make on_hand negative or smaller than what is reserved."""


def _update_stock(*where: object):  # a conditional UPDATE on stock rows, bypassing the identity map
    return update(Stock).where(*where).execution_options(synchronize_session=False)  # type: ignore[arg-type]


async def _counts(session: AsyncSession, product_id: uuid.UUID) -> tuple[int, int, bool] | None:
    row = (
        await session.execute(
            select(Stock.on_hand, Stock.reserved, Stock.low).where(Stock.product_id == product_id)  # type: ignore[arg-type]
        )
    ).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]), bool(row[2]))


async def create_stock(session: AsyncSession, product_id: uuid.UUID, now: datetime) -> bool:
    """A stock row at 0 for a new product (idempotent); True when created."""
    return await insert_ignoring_duplicates(
        session,
        Stock.__table__,  # type: ignore[arg-type]
        {
            "product_id": product_id,
            "on_hand": 0,
            "reserved": 0,
            "low": False,
            "created_at": now,
            "updated_at": now,
        },
    )


async def check_low_stock(
    session: AsyncSession, product_ids: list[uuid.UUID], threshold: int, now: datetime
) -> None:
    """Flip the ``low`` flag of products whose availability crossed the threshold; StockLow going down."""
    for pid in product_ids:
        counts = await _counts(session, pid)
        if counts is None:
            continue
        on_hand, reserved, low = counts
        new_low = low_stock_crossing(on_hand - reserved, threshold, low)
        if new_low is None:
            continue
        # Conditional on the old flag: of two racing transactions only one publishes the crossing.
        result = await session.execute(
            _update_stock(Stock.product_id == pid, Stock.low == low).values(low=new_low)  # type: ignore[arg-type]
        )
        if result.rowcount == 1 and new_low:
            await record_event(
                session, events.stock_low(pid, on_hand, reserved, threshold, now), key=str(pid), source=SOURCE
            )


async def _move(
    session: AsyncSession,
    product_id: uuid.UUID,
    *,
    kind: str,
    delta: int,
    reason: str,
    now: datetime,
    actor_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
) -> StockMovement:
    counts = await _counts(session, product_id)
    movement = StockMovement(
        product_id=product_id,
        kind=kind,
        delta=delta,
        reason=reason,
        on_hand_after=counts[0] if counts else 0,
        actor_id=actor_id,
        order_id=order_id,
        created_at=now,
    )
    session.add(movement)
    await session.flush()
    return movement


async def adjust(
    session: AsyncSession,
    product_id: uuid.UUID,
    delta: int,
    reason: str,
    *,
    actor_id: uuid.UUID,
    threshold: int,
    now: datetime,
) -> StockMovement:
    """An admin adjustment of on_hand, recorded in the audit trail."""
    result = await session.execute(
        _update_stock(
            Stock.product_id == product_id,
            Stock.on_hand + delta >= Stock.reserved,
            Stock.on_hand + delta >= 0,
        ).values(on_hand=Stock.on_hand + delta, updated_at=now)
    )
    if result.rowcount != 1:
        if await _counts(session, product_id) is None:
            raise UnknownProduct(str(product_id))
        raise StockConflict(str(product_id))
    movement = await _move(
        session, product_id, kind="adjustment", delta=delta, reason=reason, now=now, actor_id=actor_id
    )
    await check_low_stock(session, [product_id], threshold, now)
    return movement


async def reserve(
    session: AsyncSession,
    order_id: uuid.UUID,
    lines: list[Line],
    *,
    ttl: timedelta,
    threshold: int,
    now: datetime,
) -> ReservationStatus:
    """Reserve every line of an order, or none: StockReserved or StockRejected (with the reason per line).

    ``lines`` come sorted by product id (the lock order). Each line is a conditional UPDATE
    ``reserved += q WHERE on_hand - reserved >= q``; if any line does not fit, the savepoint is rolled
    back so nothing stays reserved, and the rejection is recorded instead.
    """
    existing = await session.get(Reservation, order_id)
    if existing is not None:  # already decided (or the order was cancelled before we saw it)
        return ReservationStatus(existing.status)
    failed: list[Line] = []
    savepoint = await session.begin_nested()
    for line in lines:
        result = await session.execute(
            _update_stock(
                Stock.product_id == line.product_id,
                Stock.on_hand - Stock.reserved >= line.quantity,
            ).values(reserved=Stock.reserved + line.quantity, updated_at=now)
        )
        if result.rowcount != 1:
            failed.append(line)  # keep going: the rejection names every line that does not fit
    if failed:
        await savepoint.rollback()
        rejected = []
        for line in failed:
            counts = await _counts(session, line.product_id)
            available = counts[0] - counts[1] if counts else 0
            rejected.append(events.rejected_line(line, available, unknown=counts is None))
        session.add(
            Reservation(
                order_id=order_id,
                status=ReservationStatus.REJECTED,
                lines=lines_to_json(lines),
                created_at=now,
                updated_at=now,
            )
        )
        await record_event(
            session, events.stock_rejected(order_id, rejected, now), key=str(order_id), source=SOURCE
        )
        return ReservationStatus.REJECTED
    await savepoint.commit()
    expires_at = now + ttl
    session.add(
        Reservation(
            order_id=order_id,
            status=ReservationStatus.RESERVED,
            lines=lines_to_json(lines),
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    await record_event(
        session, events.stock_reserved(order_id, lines, now, expires_at), key=str(order_id), source=SOURCE
    )
    await check_low_stock(session, [line.product_id for line in lines], threshold, now)
    return ReservationStatus.RESERVED


async def _transition(
    session: AsyncSession, order_id: uuid.UUID, old: ReservationStatus, new: ReservationStatus, now: datetime
) -> bool:
    """Move a reservation from ``old`` to ``new``; False when another transaction got there first."""
    result = await session.execute(
        update(Reservation)
        .where(Reservation.order_id == order_id, Reservation.status == old)  # type: ignore[arg-type]
        .values(status=new, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def _reservation(
    session: AsyncSession, order_id: uuid.UUID
) -> tuple[ReservationStatus, list[Line]] | None:
    row = (
        await session.execute(
            select(Reservation.status, Reservation.lines).where(Reservation.order_id == order_id)  # type: ignore[arg-type]
        )
    ).one_or_none()
    return None if row is None else (ReservationStatus(row[0]), lines_from_json(row[1]))


async def commit(session: AsyncSession, order_id: uuid.UUID, *, threshold: int, now: datetime) -> bool:
    """The order is paid: the reserved units leave the shelf (on_hand -= q, reserved -= q)."""
    found = await _reservation(session, order_id)
    if found is None:
        log.warning("commit_without_reservation", order_id=str(order_id))
        return False
    status, lines = found
    if status == ReservationStatus.RESERVED:
        if not await _transition(session, order_id, status, ReservationStatus.COMMITTED, now):
            return False
        for line in lines:
            await session.execute(
                _update_stock(Stock.product_id == line.product_id, Stock.reserved >= line.quantity).values(
                    on_hand=Stock.on_hand - line.quantity,
                    reserved=Stock.reserved - line.quantity,
                    updated_at=now,
                )
            )
            await _move(
                session,
                line.product_id,
                kind="sale",
                delta=-line.quantity,
                reason="order paid",
                now=now,
                order_id=order_id,
            )
    elif status == ReservationStatus.EXPIRED:
        # Paid after the reservation expired: take the units again if they are still there.
        savepoint = await session.begin_nested()
        for line in lines:
            result = await session.execute(
                _update_stock(
                    Stock.product_id == line.product_id, Stock.on_hand - Stock.reserved >= line.quantity
                ).values(on_hand=Stock.on_hand - line.quantity, updated_at=now)
            )
            if result.rowcount != 1:
                await savepoint.rollback()
                log.error("paid_order_out_of_stock", order_id=str(order_id), product_id=str(line.product_id))
                return False
        await savepoint.commit()
        await _transition(session, order_id, status, ReservationStatus.COMMITTED, now)
        for line in lines:
            await _move(
                session,
                line.product_id,
                kind="sale",
                delta=-line.quantity,
                reason="order paid after its reservation expired",
                now=now,
                order_id=order_id,
            )
        await check_low_stock(session, [line.product_id for line in lines], threshold, now)
    else:
        return False  # COMMITTED already, or REJECTED/RESTOCKED: nothing to do
    await record_event(
        session, events.stock_committed(order_id, lines, now), key=str(order_id), source=SOURCE
    )
    return True


async def release(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    threshold: int,
    now: datetime,
    expired: bool = False,
    cancelled_lines: list[Line] | None = None,
) -> ReservationStatus | None:
    """The order is cancelled (or its reservation expired): give the units back.

    RESERVED → RELEASED, or EXPIRED from the expiry sweep (reserved -= q); COMMITTED → RESTOCKED (a paid
    order was cancelled before shipping: on_hand += q, a "restock" in the audit trail); EXPIRED → RELEASED
    on a cancel (nothing left to give back). A cancel for an order never seen leaves a RELEASED marker so a
    late OrderPlaced reserves nothing. Returns the new status, None if unchanged.
    """
    found = await _reservation(session, order_id)
    if found is None:
        if expired:
            return None
        await insert_ignoring_duplicates(
            session,
            Reservation.__table__,  # type: ignore[arg-type]
            {
                "order_id": order_id,
                "status": ReservationStatus.RELEASED.value,
                "lines": lines_to_json(cancelled_lines or []),
                "expires_at": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        return ReservationStatus.RELEASED
    status, lines = found
    if status == ReservationStatus.EXPIRED and not expired:
        # Cancelled after expiry: the units went back already; a late OrderPaid must not take them now.
        await _transition(session, order_id, status, ReservationStatus.RELEASED, now)
        return ReservationStatus.RELEASED
    if status == ReservationStatus.RESERVED:
        new = ReservationStatus.EXPIRED if expired else ReservationStatus.RELEASED
        if not await _transition(session, order_id, status, new, now):
            return None
        for line in lines:
            await session.execute(
                _update_stock(Stock.product_id == line.product_id, Stock.reserved >= line.quantity).values(
                    reserved=Stock.reserved - line.quantity, updated_at=now
                )
            )
    elif status == ReservationStatus.COMMITTED and not expired:
        if not await _transition(session, order_id, status, ReservationStatus.RESTOCKED, now):
            return None
        for line in lines:
            await session.execute(
                _update_stock(Stock.product_id == line.product_id).values(
                    on_hand=Stock.on_hand + line.quantity, updated_at=now
                )
            )
            await _move(
                session,
                line.product_id,
                kind="restock",
                delta=line.quantity,
                reason="paid order cancelled before shipping",
                now=now,
                order_id=order_id,
            )
        new = ReservationStatus.RESTOCKED
    else:
        return None
    await record_event(
        session,
        events.stock_released(order_id, lines, now, expired=expired),
        key=str(order_id),
        source=SOURCE,
    )
    await check_low_stock(session, [line.product_id for line in lines], threshold, now)
    return new


async def expired_reservations(session: AsyncSession, now: datetime, limit: int = 100) -> list[uuid.UUID]:
    rows = await session.execute(
        select(Reservation.order_id)
        .where(Reservation.status == ReservationStatus.RESERVED, Reservation.expires_at < now)  # type: ignore[arg-type]
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    return [r[0] for r in rows]
