"""Moving an order through the saga: lock it, ask the state machine (``domain.TRANSITIONS``), record the
history entry and the event of the transition in the same transaction. Routes, handlers and the
payment-window check all go through :func:`advance`."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from mart_common.clock import utcnow
from mart_common.outbox import record_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order_service import events
from order_service.domain import OrderStatus, Trigger, history_entry, next_status
from order_service.models import Order

log = structlog.get_logger(__name__)


async def load_for_update(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """The order with its row locked until the transaction ends (PostgreSQL; SQLite transactions are
    serialised by BEGIN IMMEDIATE), so two transitions never race."""
    return (
        await session.execute(
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


async def advance(
    session: AsyncSession,
    order: Order,
    trigger: Trigger,
    reason: str,
    *,
    payment_window: timedelta | None = None,
    payment_id: str | None = None,
    now: datetime | None = None,
) -> OrderStatus:
    """Apply ``trigger`` to a locked ``order``; raises ``TransitionNotAllowed`` when the table forbids it."""
    now = now or utcnow()
    previous = OrderStatus(order.status)
    new = next_status(previous, trigger)
    was_paid = previous == OrderStatus.PAID
    order.status = new.value
    order.updated_at = now
    order.history = [*order.history, history_entry(new, now, reason)]  # a new list: JSON change tracking
    if new == OrderStatus.AWAITING_PAYMENT and payment_window is not None:
        order.payment_deadline = now + payment_window
    if payment_id:
        order.payment_id = payment_id
    message = events.for_transition(order, previous, new, reason, now, was_paid=was_paid)
    if message is not None:
        await record_event(session, message, key=str(order.id), source=events.SOURCE)
    log.info(
        "order_transition", order_id=str(order.id), previous=previous.value, status=new.value, reason=reason
    )
    return new
