"""The use-cases of order-service: placing, reading and moving orders (docs/api.md), the saga's answers
and the catalog read model (docs/saga.md, docs/events.md), and the payment-window sweep.

They work inside the caller's transaction (a route's ``TransactionDep``, an event's inbox transaction) and
never commit, except :func:`cancel_unpaid_orders`, which owns its transactions. Every move of an order goes
through :func:`advance`: lock the row, ask the state machine (``domain.TRANSITIONS``), record the history
entry and the transition's event in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from mart.products.v1 import products_pb2
from mart_common.auth import Principal
from mart_common.clock import utcnow
from mart_common.db import Database, upsert
from mart_common.deps import Page
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound, Unprocessable
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from order_service import events
from order_service.context import OrderContext
from order_service.domain import (
    WAITING_FOR_PAYMENT,
    MixedCurrencies,
    OrderStatus,
    PricedLine,
    ProductsUnavailable,
    TooManyUnits,
    TransitionNotAllowed,
    Trigger,
    check_quantities,
    fingerprint,
    history_entry,
    merge_quantities,
    price_lines,
    total,
    transition,
)
from order_service.models import CatalogProduct, IdempotencyKey, Order, OrderCount
from order_service.schemas import OrderCreate, OrderPublic

log = structlog.get_logger(__name__)


# --- placing an order -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """The answer to a placed order: the order as the API shows it, or the first answer to its
    Idempotency-Key again (``replayed``)."""

    response: dict[str, Any]
    replayed: bool = False


async def place_order(
    session: AsyncSession,
    ctx: OrderContext,
    user: Principal,
    body: OrderCreate,
    idempotency_key: str | None,
) -> Placed:
    """Place an order (PENDING) and record ``OrderPlaced``; inventory then reserves its lines. The same
    Idempotency-Key with the same body answers the first response again, with another body 422."""
    body_fingerprint = fingerprint(body.model_dump(mode="json"))
    if idempotency_key is not None:
        saved = await session.get(IdempotencyKey, (user.user_id, idempotency_key))
        if saved is not None:
            return _replay(saved, body_fingerprint)
    lines = await _price(session, merge_quantities((str(i.product_id), i.quantity) for i in body.items))
    order = _build_order(user.user_id, lines, body, ctx.settings.payment_window_s, utcnow())
    response = OrderPublic.of(order).model_dump(mode="json")
    if idempotency_key is None:
        session.add(order)
    else:
        key = IdempotencyKey(
            user_id=user.user_id,
            key=idempotency_key,
            fingerprint=body_fingerprint,
            order_id=order.id,
            response=response,
            created_at=order.created_at,
        )
        winner = await _add_once(session, order, key)
        if winner is not None:
            return _replay(winner, body_fingerprint)
    # After the savepoint: record_event refuses to run inside one (docs/shared-library.md).
    await record_event(session, events.order_placed(order), key=str(order.id))
    return Placed(response)


def _replay(saved: IdempotencyKey, body_fingerprint: str) -> Placed:
    if saved.fingerprint != body_fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with another request body.", slug="idempotency-key-reused"
        )
    return Placed(saved.response, replayed=True)


async def _price(session: AsyncSession, quantities: dict[str, int]) -> list[PricedLine]:
    """Prices come from the catalog read model, never from the client."""
    try:
        check_quantities(quantities)
    except TooManyUnits as exc:
        raise Unprocessable(str(exc), slug="quantity-too-large", product_ids=exc.product_ids) from None
    ids = [uuid.UUID(pid) for pid in quantities]
    rows = (await session.scalars(_CATALOG_ROWS, {"ids": ids})).all()
    try:
        return price_lines(quantities, {str(p.product_id): p for p in rows})
    except ProductsUnavailable as exc:
        raise Unprocessable(
            str(exc),
            slug="products-unavailable",
            unknown_products=exc.unknown,
            archived_products=exc.archived,
        ) from None


_CATALOG_ROWS = select(CatalogProduct).where(
    CatalogProduct.product_id.in_(bindparam("ids", expanding=True))  # type: ignore[attr-defined]
)


def _build_order(
    user_id: uuid.UUID, lines: list[PricedLine], body: OrderCreate, payment_window_s: float, now: datetime
) -> Order:
    try:
        total_cents, currency = total(lines)
    except MixedCurrencies as exc:
        raise Unprocessable(
            f"All products of an order must share one currency (got {exc}).", slug="mixed-currencies"
        ) from None
    return Order(
        user_id=user_id,
        status=OrderStatus.PENDING.value,
        items=[
            {
                "product_id": line.product_id,
                "product_name": line.product_name,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
            }
            for line in lines
        ],
        total_cents=total_cents,
        currency=currency,
        shipping_address=body.shipping_address.model_dump(mode="json", exclude_none=True),
        history=[history_entry(OrderStatus.PENDING, now, "order placed")],
        # PENDING orders expire too (inventory never answered); reset when stock is reserved.
        payment_deadline=now + timedelta(seconds=payment_window_s),
        created_at=now,
        updated_at=now,
    )


async def _add_once(session: AsyncSession, order: Order, key: IdempotencyKey) -> IdempotencyKey | None:
    """Add ``order`` with its Idempotency-Key; None when done. When a concurrent request with the same key
    committed first (the key's unique conflict, surfaced here rather than at commit), nothing is added and
    that request's key is returned to be replayed."""
    try:
        async with session.begin_nested():
            session.add_all([order, key])
            await session.flush()
    except IntegrityError:
        saved = await session.get(IdempotencyKey, (key.user_id, key.key))
        if saved is None:
            raise
        return saved
    return None


# --- reading orders ---------------------------------------------------------------------------------


async def get_order(session: AsyncSession, user: Principal, order_id: uuid.UUID) -> Order:
    """One order (owner or admin; anyone else: 404)."""
    order = await session.get(Order, order_id)
    if order is None or (not user.is_admin and order.user_id != user.user_id):
        raise NotFound(f"Order {order_id} does not exist.")
    return order


async def list_orders(
    session: AsyncSession,
    user: Principal,
    page: Page,
    *,
    user_id: uuid.UUID | None = None,
    status: OrderStatus | None = None,
) -> dict[str, Any]:
    """A page of the caller's orders, newest first (admin: everyone's, optionally one user's)."""
    where = []
    if not user.is_admin:
        where.append(Order.user_id == user.user_id)
    elif user_id is not None:
        where.append(Order.user_id == user_id)
    if status is not None:
        where.append(Order.status == status.value)
    # newest first, then id: ix_orders_created (everyone's) or ix_orders_user_created read in order
    query = select(Order).where(*where).order_by(Order.created_at.desc(), Order.id.desc())  # type: ignore[union-attr]
    # everyone's orders: the kept count (order_counts), not a count of a table that only grows
    total = None if where else select(func.coalesce(func.sum(OrderCount.n), 0))
    return await page.of(session, query, OrderPublic.of, total=total)


# --- moving orders ----------------------------------------------------------------------------------

# Built once (building a statement costs more than SQLAlchemy's cached execution of it).
_ORDER_FOR_UPDATE = (
    select(Order)
    .where(Order.id == bindparam("oid"))
    .with_for_update()
    .execution_options(populate_existing=True)  # type: ignore[arg-type]
)


async def load_for_update(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """The order with its row locked until the transaction ends (PostgreSQL; SQLite transactions are
    serialised by BEGIN IMMEDIATE), so two transitions never race."""
    return (await session.execute(_ORDER_FOR_UPDATE, {"oid": order_id})).scalar_one_or_none()


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
    move = transition(order.status, trigger, reason, now or utcnow(), payment_window=payment_window)
    order.status = move.status.value
    order.updated_at = move.at
    order.history = [*order.history, move.history_entry]  # a new list: JSON change tracking
    if move.payment_deadline is not None:
        order.payment_deadline = move.payment_deadline
    if payment_id:
        order.payment_id = payment_id
    message = events.for_transition(order, move)
    if message is not None:
        await record_event(session, message, key=str(order.id))
    log.info(
        "order_transition",
        order_id=str(order.id),
        previous=move.previous.value,
        status=move.status.value,
        reason=reason,
    )
    return move.status


async def _act(
    session: AsyncSession, order_id: uuid.UUID, owner: uuid.UUID | None, trigger: Trigger, reason: str
) -> Order:
    """An HTTP action on an order: 404 when it is not there (or not ``owner``'s), 409 when its status
    does not allow ``trigger``."""
    order = await load_for_update(session, order_id)
    if order is None or (owner is not None and order.user_id != owner):
        raise NotFound(f"Order {order_id} does not exist.")
    try:
        await advance(session, order, trigger, reason)
    except TransitionNotAllowed as exc:
        raise Conflict(str(exc), slug="transition-not-allowed", current_status=exc.status.value) from None
    return order


async def cancel_order(session: AsyncSession, user: Principal, order_id: uuid.UUID) -> Order:
    """Cancel (owner or admin) while PENDING, AWAITING_PAYMENT or PAID (a paid order is refunded)."""
    who = "admin" if user.is_admin else "customer"
    owner = None if user.is_admin else user.user_id
    return await _act(session, order_id, owner, Trigger.CANCEL, f"cancelled by {who}")


async def ship_order(session: AsyncSession, order_id: uuid.UUID) -> Order:
    return await _act(session, order_id, None, Trigger.SHIP, "shipped")


async def deliver_order(session: AsyncSession, order_id: uuid.UUID) -> Order:
    return await _act(session, order_id, None, Trigger.DELIVER, "delivered")


async def move(
    session: AsyncSession,
    order_id: uuid.UUID,
    trigger: Trigger,
    reason: str,
    *,
    payment_window: timedelta | None = None,
    payment_id: str | None = None,
) -> None:
    """An event of the saga moves an order. An unknown order, or one whose status no longer allows
    ``trigger`` (a late or repeated event), is logged and left as it is: not an error."""
    order = await load_for_update(session, order_id)
    if order is None:
        log.warning("event_for_unknown_order", order_id=str(order_id), trigger=trigger.value)
        return
    try:
        await advance(session, order, trigger, reason, payment_window=payment_window, payment_id=payment_id)
    except TransitionNotAllowed:
        # Late or repeated: e.g. a payment that succeeded after the order was cancelled (the payment
        # service refunds it), or StockReserved for an order cancelled while PENDING.
        log.info(
            "event_ignored_for_status", order_id=str(order_id), status=order.status, trigger=trigger.value
        )


async def cancel_unpaid_orders(db: Database, limit: int = 200) -> int:
    """Cancel orders whose payment window has passed, one transaction each, re-checked under lock (the
    periodic ``cancel-unpaid-orders`` job); returns how many it cancelled."""
    waiting = [s.value for s in WAITING_FOR_PAYMENT]
    async with db.session() as session:
        due = (
            await session.scalars(
                select(Order.id)
                .where(Order.status.in_(waiting), Order.payment_deadline < utcnow())  # type: ignore[attr-defined,operator]
                .order_by(Order.payment_deadline)
                .limit(limit)
            )
        ).all()
    cancelled = 0
    for order_id in due:
        async with db.transaction() as session:
            order = await load_for_update(session, order_id)
            if order is None or order.status not in waiting:
                continue  # paid or cancelled meanwhile
            await advance(session, order, Trigger.PAYMENT_WINDOW_EXPIRED, "payment window expired")
            cancelled += 1
    if cancelled:
        log.info("unpaid_orders_cancelled", count=cancelled)
    return cancelled


# --- the catalog read model -------------------------------------------------------------------------


def _newer(excluded: Any) -> Any:
    """An older or repeated product event changes nothing."""
    return CatalogProduct.__table__.c.version < excluded.version


async def apply_product(
    session: AsyncSession, product: products_pb2.Product, *, archived: bool = False
) -> None:
    """Upsert the read model row, only if this event's ``version`` is newer than the stored one."""
    values = {
        "product_id": uuid.UUID(product.product_id),
        "name": product.name,
        "price_cents": product.price_cents,
        "currency": product.currency,
        "archived": archived or product.archived,
        "version": product.version,
        "updated_at": utcnow(),
    }
    await upsert(session, CatalogProduct.__table__, values, keys=("product_id",), where=_newer)
