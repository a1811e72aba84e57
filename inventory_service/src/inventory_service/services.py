"""The use-cases of inventory-service: one function per thing an order event, the expiry sweep or an admin
does to stock and reservations (docs/saga.md, "The reservation").

They run inside the caller's transaction (the inbox transaction of an event, ``TransactionDep`` for a route)
and never commit, except the expiry sweep, which owns one transaction per reservation; the events they cause
go to the outbox of that same transaction. Every change of a stock row is a conditional UPDATE (never
read-modify-write), and a transaction changing several stock rows changes them in product-id order (the
lines come sorted from ``domain.merge_lines``): that lock order rules out deadlocks on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from mart_common.clock import utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.deps import Page
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound
from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inventory_service import events
from inventory_service.context import InventoryContext
from inventory_service.domain import (
    MOVEMENTS,
    Line,
    ReservationStatus,
    StockEffect,
    Transition,
    TransitionNotAllowed,
    Trigger,
    lines_from_json,
    lines_to_json,
    low_stock_crossing,
    transition,
)
from inventory_service.models import Reservation, Stock, StockMovement

log = structlog.get_logger(__name__)


# --- Reads -------------------------------------------------------------------------------------


async def get_stock(session: AsyncSession, product_id: uuid.UUID) -> Stock:
    """Stock of one product; NotFound when inventory has not seen its ProductCreated."""
    stock = await session.get(Stock, product_id)
    if stock is None:
        raise NotFound(f"No stock for product {product_id}.")
    return stock


async def list_stock(session: AsyncSession, page: Page, below: int | None) -> tuple[list[Stock], int]:
    """A page of every product's stock, lowest availability first (``below``: only available < below)."""
    available = Stock.on_hand - Stock.reserved
    where = [] if below is None else [available < below]
    query = select(Stock).where(*where).order_by(available, Stock.product_id)
    return await page.rows(session, query, entities=True)


async def list_movements(
    session: AsyncSession, page: Page, product_id: uuid.UUID
) -> tuple[list[StockMovement], int]:
    """A page of the audit trail of on_hand of one product, newest first: adjustments, sales, restocks."""
    await get_stock(session, product_id)
    query = (
        select(StockMovement)
        .where(StockMovement.product_id == product_id)
        .order_by(StockMovement.created_at.desc(), StockMovement.id)  # type: ignore[union-attr]
    )
    return await page.rows(session, query, entities=True)


# --- Admin -------------------------------------------------------------------------------------


async def adjust_stock(
    session: AsyncSession,
    ctx: InventoryContext,
    product_id: uuid.UUID,
    delta: int,
    reason: str,
    *,
    actor_id: uuid.UUID,
) -> tuple[StockMovement, Stock]:
    """An admin adds (delta > 0) or removes (delta < 0) units on hand, recorded in the audit trail.

    NotFound for a product without stock; Conflict when on hand would fall below what is reserved or below
    zero. Returns the movement and the stock as it now is.
    """
    now = utcnow()
    result = await session.execute(
        _update_stock(
            Stock.product_id == product_id,
            Stock.on_hand + delta >= Stock.reserved,
            Stock.on_hand + delta >= 0,
        ).values(on_hand=Stock.on_hand + delta, updated_at=now)
    )
    if result.rowcount != 1:
        if await _counts(session, product_id) is None:
            raise NotFound(f"No stock for product {product_id}.")
        raise Conflict(
            "On hand would fall below the reserved quantity or below zero.", slug="insufficient-stock"
        )
    movement = await _record_movement(
        session, product_id, kind="adjustment", delta=delta, reason=reason, now=now, actor_id=actor_id
    )
    await _check_low_stock(session, ctx, [product_id], now)
    return movement, await get_stock(session, product_id)


# --- Events ------------------------------------------------------------------------------------


async def create_stock(session: AsyncSession, product_id: uuid.UUID) -> bool:
    """A new product (ProductCreated) gets a stock row at 0 (idempotent); True when created."""
    now = utcnow()
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


async def reserve_for_order(
    session: AsyncSession, ctx: InventoryContext, order_id: uuid.UUID, lines: list[Line]
) -> ReservationStatus:
    """An order is placed: reserve every line or none (docs/saga.md) — StockReserved, or StockRejected naming
    each line that does not fit. ``lines`` come sorted by product id (the lock order). An order seen before
    (decided already, or cancelled before it was placed) changes nothing."""
    existing = await session.get(Reservation, order_id)
    if existing is not None:
        return ReservationStatus(existing.status)
    now = utcnow()
    short, counts = await _hold_all_or_none(session, lines, now)
    if short:
        await _record_rejection(session, order_id, lines, short, now)
        return ReservationStatus.REJECTED
    await _record_reservation(session, ctx, order_id, lines, now, counts)
    return ReservationStatus.RESERVED


async def commit_for_order(session: AsyncSession, ctx: InventoryContext, order_id: uuid.UUID) -> bool:
    """The order is paid: the reserved units leave the shelf (StockCommitted). Paid after its reservation
    expired: the units are taken again if every line is still available, else the reservation stays EXPIRED
    (``paid_order_out_of_stock`` is logged: no overselling). True when committed."""
    found = await _reservation(session, order_id)
    if found is None:
        log.warning("commit_without_reservation", order_id=str(order_id))
        return False
    status, lines = found
    now = utcnow()
    step = await _apply(session, order_id, status, lines, Trigger.PAY, now)
    if step is None:
        return False  # committed already, rejected, released or restocked: nothing to do
    if step.effect.changes_available:
        await _check_low_stock(session, ctx, [line.product_id for line in lines], now)
    await record_event(session, events.stock_committed(order_id, lines, now), key=str(order_id))
    return True


async def release_for_order(
    session: AsyncSession, ctx: InventoryContext, order_id: uuid.UUID, cancelled_lines: list[Line]
) -> ReservationStatus | None:
    """The order is cancelled: give the units back (StockReleased) — held units are released, the units of
    a paid order are restocked. A cancel for an order never seen leaves a RELEASED marker so that a late
    OrderPlaced reserves nothing. Returns the new status, None if unchanged."""
    found = await _reservation(session, order_id)
    now = utcnow()
    if found is None:
        await _record_release_marker(session, order_id, cancelled_lines, now)
        return ReservationStatus.RELEASED
    status, lines = found
    return await _give_back(session, ctx, order_id, status, lines, Trigger.CANCEL, now)


async def release_expired_reservations(db: Database, ctx: InventoryContext) -> int:
    """The expiry sweep: release the reservations whose order was neither paid nor cancelled in time, one
    transaction each (a backstop behind the order's payment window). Returns how many were released."""
    now = utcnow()
    async with db.session() as session:
        order_ids = await _expired_reservations(session, now.astimezone(UTC))
    released = 0
    for order_id in order_ids:
        async with db.transaction() as session:
            if await _expire_reservation(session, ctx, order_id):
                released += 1
    if released:
        log.info("reservations_expired", count=released)
    return released


# --- Steps of reserving ------------------------------------------------------------------------


Counts = tuple[int, int, bool]  # on hand, reserved, the low flag


async def _hold_all_or_none(
    session: AsyncSession, lines: list[Line], now: datetime
) -> tuple[list[Line], dict[uuid.UUID, Counts]]:
    """Hold every line (``reserved += q`` where it fits), all or none: returns the lines that do not fit
    (nothing stays held then) and the held rows' counts after the hold (for the low-stock check, without
    reading them again). Several lines hold inside a savepoint, rolled back when one does not fit; a
    single line needs none (its conditional UPDATE changed nothing when it did not fit)."""
    short: list[Line] = []
    counts: dict[uuid.UUID, Counts] = {}
    savepoint = await session.begin_nested() if len(lines) > 1 else None
    for line in lines:
        row = (
            await session.execute(_HOLD, {"pid": line.product_id, "q": line.quantity, "now": now})
        ).one_or_none()
        if row is None:
            short.append(line)  # keep going: the rejection names every line that does not fit
        else:
            counts[line.product_id] = (int(row[0]), int(row[1]), bool(row[2]))
    if savepoint is not None:
        await (savepoint.rollback() if short else savepoint.commit())
    return short, (counts if not short else {})


async def _record_rejection(
    session: AsyncSession, order_id: uuid.UUID, lines: list[Line], short: list[Line], now: datetime
) -> None:
    """A REJECTED reservation and StockRejected with what each short line asked and what is available."""
    rejected = []
    for line in short:
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
    await record_event(session, events.stock_rejected(order_id, rejected, now), key=str(order_id))


async def _record_reservation(
    session: AsyncSession,
    ctx: InventoryContext,
    order_id: uuid.UUID,
    lines: list[Line],
    now: datetime,
    counts: dict[uuid.UUID, Counts],
) -> None:
    """The RESERVED reservation (expiring after the TTL), StockReserved, and the low-stock crossings."""
    expires_at = now + ctx.reservation_ttl
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
    await record_event(session, events.stock_reserved(order_id, lines, now, expires_at), key=str(order_id))
    await _check_low_stock(session, ctx, [line.product_id for line in lines], now, known=counts)


# --- Steps of moving a reservation (domain.TRANSITIONS) --------------------------------------------


async def _apply(
    session: AsyncSession,
    order_id: uuid.UUID,
    status: ReservationStatus,
    lines: list[Line],
    trigger: Trigger,
    now: datetime,
) -> Transition | None:
    """Move one reservation along the transition table and change its stock rows as the step says, with
    the step's audit trail; None when the table refuses (the event changes nothing) or when another
    transaction moved the reservation first."""
    try:
        step = transition(status, trigger)
    except TransitionNotAllowed:
        return None
    on_hand_after: dict[uuid.UUID, int] = {}
    if step.effect is StockEffect.SELL_AVAILABLE:
        # The units first, all or none: when one is gone the reservation stays where it is.
        if not await _take_available(session, order_id, lines, now):
            return None
        await _set_status(session, order_id, status, step.to, now)
    elif await _set_status(session, order_id, status, step.to, now):
        on_hand_after = await _change_stock(session, lines, step.effect, now)
    else:
        return None  # another transaction (the expiry sweep, a redelivery) moved it first
    await _record_movements(session, order_id, lines, step.effect, now, on_hand_after)
    return step


async def _record_movements(
    session: AsyncSession,
    order_id: uuid.UUID,
    lines: list[Line],
    effect: StockEffect,
    now: datetime,
    on_hand_after: dict[uuid.UUID, int],
) -> None:
    """The audit-trail entry of ``effect`` (domain.MOVEMENTS) for each line, when it changes on_hand
    (``on_hand_after``: what the stock UPDATEs returned, so no row is read again)."""
    movement = MOVEMENTS.get(effect)
    if movement is None:
        return
    for line in lines:
        await _record_movement(
            session,
            line.product_id,
            kind=movement.kind,
            delta=movement.sign * line.quantity,
            reason=movement.reason,
            now=now,
            order_id=order_id,
            on_hand_after=on_hand_after.get(line.product_id),
        )


async def _give_back(
    session: AsyncSession,
    ctx: InventoryContext,
    order_id: uuid.UUID,
    status: ReservationStatus,
    lines: list[Line],
    trigger: Trigger,
    now: datetime,
) -> ReservationStatus | None:
    """Cancel or expiry of a known reservation: move it, then StockReleased and the low-stock crossings
    when units went back. Returns the new status, None if unchanged."""
    step = await _apply(session, order_id, status, lines, trigger, now)
    if step is None:
        return None
    if step.effect is StockEffect.NONE:
        return step.to  # cancelled after expiry: the units went back (and were announced) already
    expired = trigger is Trigger.EXPIRE
    await record_event(
        session, events.stock_released(order_id, lines, now, expired=expired), key=str(order_id)
    )
    await _check_low_stock(session, ctx, [line.product_id for line in lines], now)
    return step.to


async def _expire_reservation(
    session: AsyncSession, ctx: InventoryContext, order_id: uuid.UUID
) -> ReservationStatus | None:
    found = await _reservation(session, order_id)
    if found is None:
        return None
    status, lines = found
    return await _give_back(session, ctx, order_id, status, lines, Trigger.EXPIRE, utcnow())


async def _record_release_marker(
    session: AsyncSession, order_id: uuid.UUID, lines: list[Line], now: datetime
) -> None:
    await insert_ignoring_duplicates(
        session,
        Reservation.__table__,  # type: ignore[arg-type]
        {
            "order_id": order_id,
            "status": ReservationStatus.RELEASED.value,
            "lines": lines_to_json(lines),
            "expires_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )


async def _set_status(
    session: AsyncSession, order_id: uuid.UUID, old: ReservationStatus, new: ReservationStatus, now: datetime
) -> bool:
    """``old`` → ``new``, conditional on ``old``; False when another transaction got there first."""
    result = await session.execute(_SET_STATUS, {"oid": order_id, "old": old, "new": new, "now": now})
    return result.rowcount == 1


async def _take_available(
    session: AsyncSession, order_id: uuid.UUID, lines: list[Line], now: datetime
) -> bool:
    """``on_hand -= q`` for every line while it is available, in a savepoint: all lines or none."""
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
    return True


async def _change_stock(
    session: AsyncSession, lines: list[Line], effect: StockEffect, now: datetime
) -> dict[uuid.UUID, int]:
    """The conditional UPDATE of ``effect`` on each line's stock row, in the lines' (lock) order; returns
    each changed row's on_hand afterwards."""
    on_hand_after: dict[uuid.UUID, int] = {}
    statement = _EFFECT_UPDATES.get(effect)  # None: NONE; SELL_AVAILABLE is all or none (_take_available)
    if statement is None:
        return on_hand_after
    for line in lines:
        params = {"pid": line.product_id, "q": line.quantity, "now": now}
        row = (await session.execute(statement, params)).one_or_none()
        if row is not None:
            on_hand_after[line.product_id] = int(row[0])
    return on_hand_after


# --- Shared steps ------------------------------------------------------------------------------


def _update_stock(*where: Any) -> Update:
    """A conditional UPDATE on stock rows, bypassing the identity map."""
    return update(Stock).where(*where).execution_options(synchronize_session=False)


# The statements every reservation step runs, built once (parameters: pid, q, now; oid, old, new, now):
# building one costs more than SQLAlchemy's cached execution of it.
_PID, _Q, _NOW = bindparam("pid"), bindparam("q"), bindparam("now")
_HOLD = (
    _update_stock(Stock.product_id == _PID, Stock.on_hand - Stock.reserved >= _Q)
    .values(reserved=Stock.reserved + _Q, updated_at=_NOW)
    .returning(Stock.on_hand, Stock.reserved, Stock.low)
)
_EFFECT_UPDATES: dict[StockEffect, Update] = {
    StockEffect.SELL_RESERVED: _update_stock(Stock.product_id == _PID, Stock.reserved >= _Q)
    .values(on_hand=Stock.on_hand - _Q, reserved=Stock.reserved - _Q, updated_at=_NOW)
    .returning(Stock.on_hand),
    StockEffect.UNRESERVE: _update_stock(Stock.product_id == _PID, Stock.reserved >= _Q)
    .values(reserved=Stock.reserved - _Q, updated_at=_NOW)
    .returning(Stock.on_hand),
    StockEffect.RESTOCK: _update_stock(Stock.product_id == _PID)
    .values(on_hand=Stock.on_hand + _Q, updated_at=_NOW)
    .returning(Stock.on_hand),
}
_SET_STATUS = (
    update(Reservation)
    .where(Reservation.order_id == bindparam("oid"), Reservation.status == bindparam("old"))  # type: ignore[arg-type]
    .values(status=bindparam("new"), updated_at=_NOW)
    .execution_options(synchronize_session=False)
)
_RESERVATION = select(Reservation.status, Reservation.lines).where(
    Reservation.order_id == bindparam("oid")  # type: ignore[arg-type]
)


async def _counts(session: AsyncSession, product_id: uuid.UUID) -> tuple[int, int, bool] | None:
    row = (
        await session.execute(
            select(Stock.on_hand, Stock.reserved, Stock.low).where(Stock.product_id == product_id)  # type: ignore[arg-type]
        )
    ).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]), bool(row[2]))


async def _reservation(
    session: AsyncSession, order_id: uuid.UUID
) -> tuple[ReservationStatus, list[Line]] | None:
    row = (await session.execute(_RESERVATION, {"oid": order_id})).one_or_none()
    return None if row is None else (ReservationStatus(row[0]), lines_from_json(row[1]))


async def _expired_reservations(session: AsyncSession, now: datetime, limit: int = 100) -> list[uuid.UUID]:
    rows = await session.execute(
        select(Reservation.order_id)
        .where(Reservation.status == ReservationStatus.RESERVED, Reservation.expires_at < now)  # type: ignore[arg-type]
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    return [r[0] for r in rows]


async def _record_movement(
    session: AsyncSession,
    product_id: uuid.UUID,
    *,
    kind: str,
    delta: int,
    reason: str,
    now: datetime,
    actor_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    on_hand_after: int | None = None,
) -> StockMovement:
    """An entry of the audit trail of on_hand, with the on_hand the change left (read unless given)."""
    if on_hand_after is None:
        counts = await _counts(session, product_id)
        on_hand_after = counts[0] if counts else 0
    movement = StockMovement(
        product_id=product_id,
        kind=kind,
        delta=delta,
        reason=reason,
        on_hand_after=on_hand_after,
        actor_id=actor_id,
        order_id=order_id,
        created_at=now,
    )
    session.add(movement)
    await session.flush()
    return movement


async def _check_low_stock(
    session: AsyncSession,
    ctx: InventoryContext,
    product_ids: list[uuid.UUID],
    now: datetime,
    *,
    known: dict[uuid.UUID, Counts] | None = None,
) -> None:
    """Flip the ``low`` flag of products whose availability crossed the threshold; StockLow going down.
    ``known``: counts this transaction already holds (the rows are locked by its UPDATE), not read again."""
    threshold = ctx.low_stock_threshold
    for pid in product_ids:
        counts = (known or {}).get(pid) or await _counts(session, pid)
        if counts is None:
            continue
        on_hand, reserved, low = counts
        new_low = low_stock_crossing(on_hand - reserved, threshold, low)
        if new_low is None:
            continue
        # Conditional on the old flag: of two racing transactions only one publishes the crossing.
        result = await session.execute(
            _update_stock(Stock.product_id == pid, Stock.low == low).values(low=new_low)
        )
        if result.rowcount == 1 and new_low:
            await record_event(
                session, events.stock_low(pid, on_hand, reserved, threshold, now), key=str(pid)
            )
