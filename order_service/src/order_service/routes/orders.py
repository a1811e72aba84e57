"""Orders: place (with Idempotency-Key), read, cancel (owner/admin), ship and deliver (admin)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse
from mart_common.clock import utcnow
from mart_common.deps import AdminUser, CurrentUser, PageDep, Paginated, RuntimeDep, SessionDep
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound, Unprocessable, problem_responses
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from order_service import events
from order_service.checkout import advance, load_for_update
from order_service.domain import (
    MixedCurrencies,
    OrderStatus,
    PricedLine,
    TransitionNotAllowed,
    Trigger,
    fingerprint,
    history_entry,
    merge_quantities,
    total,
)
from order_service.models import CatalogProduct, IdempotencyKey, Order
from order_service.schemas import OrderCreate, OrderPublic
from order_service.settings import OrderSettings

router = APIRouter(prefix="/orders", tags=["orders"])

MAX_UNITS_PER_PRODUCT = 100

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key + same body → the first response again (no second order); "
        "same key + another body → 422. Keys are scoped per user.",
    ),
]


def _replay(saved: IdempotencyKey, body_fingerprint: str) -> JSONResponse:
    if saved.fingerprint != body_fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with another request body.", slug="idempotency-key-reused"
        )
    return JSONResponse(
        saved.response, status_code=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"}
    )


async def _price(session: SessionDep, quantities: dict[str, int]) -> list[PricedLine]:
    """Prices come from the catalog read model, never from the client."""
    over = [pid for pid, q in quantities.items() if q > MAX_UNITS_PER_PRODUCT]
    if over:
        raise Unprocessable(
            f"At most {MAX_UNITS_PER_PRODUCT} units per product (duplicate lines are summed).",
            slug="quantity-too-large",
            product_ids=over,
        )
    ids = [uuid.UUID(pid) for pid in quantities]
    rows = (await session.scalars(select(CatalogProduct).where(CatalogProduct.product_id.in_(ids)))).all()  # type: ignore[attr-defined]
    known = {str(p.product_id): p for p in rows}
    unknown = [pid for pid in quantities if pid not in known]
    archived = [pid for pid in quantities if pid in known and known[pid].archived]
    if unknown or archived:
        raise Unprocessable(
            "Some products cannot be ordered: "
            + "; ".join([*(f"{p} is unknown" for p in unknown), *(f"{p} is archived" for p in archived)]),
            slug="products-unavailable",
            unknown_products=unknown,
            archived_products=archived,
        )
    return [
        PricedLine(pid, known[pid].name, q, known[pid].price_cents, known[pid].currency)
        for pid, q in quantities.items()
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderPublic,
    responses=problem_responses(401, 422),
)
async def place_order(
    body: OrderCreate,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Place an order (PENDING); inventory then reserves its lines and the saga takes it from there."""
    settings: OrderSettings = runtime.settings  # type: ignore[assignment]
    body_fingerprint = fingerprint(body.model_dump(mode="json"))
    if idempotency_key is not None:
        saved = await session.get(IdempotencyKey, (user.user_id, idempotency_key))
        if saved is not None:
            return _replay(saved, body_fingerprint)

    lines = await _price(session, merge_quantities((str(i.product_id), i.quantity) for i in body.items))
    try:
        total_cents, currency = total(lines)
    except MixedCurrencies as exc:
        raise Unprocessable(
            f"All products of an order must share one currency (got {exc}).", slug="mixed-currencies"
        ) from None

    now = utcnow()
    order = Order(
        user_id=user.user_id,
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
        payment_deadline=now + timedelta(seconds=settings.payment_window_s),
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    await record_event(session, events.order_placed(order), key=str(order.id), source=events.SOURCE)
    payload = OrderPublic.of(order).model_dump(mode="json")
    if idempotency_key is not None:
        session.add(
            IdempotencyKey(
                user_id=user.user_id,
                key=idempotency_key,
                fingerprint=body_fingerprint,
                order_id=order.id,
                response=payload,
                created_at=now,
            )
        )
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent request with the same key won: answer as it did.
        await session.rollback()
        saved = await session.get(IdempotencyKey, (user.user_id, idempotency_key))
        if saved is None:
            raise
        return _replay(saved, body_fingerprint)
    return JSONResponse(payload, status_code=status.HTTP_201_CREATED)


@router.get("", response_model=Paginated[OrderPublic], responses=problem_responses(401, 422))
async def list_orders(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    user_id: Annotated[uuid.UUID | None, Query(description="Admin only: orders of this user.")] = None,
    status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> dict[str, Any]:
    """Your orders, newest first (admin: everyone's, optionally by ``user_id`` and ``status``)."""
    where = []
    if not user.is_admin:
        where.append(Order.user_id == user.user_id)
    elif user_id is not None:
        where.append(Order.user_id == user_id)
    if status_ is not None:
        where.append(Order.status == status_.value)
    query = select(Order).where(*where).order_by(Order.created_at.desc(), Order.id)  # type: ignore[union-attr]
    return await page.of(session, query, OrderPublic.of)


@router.get("/{order_id}", response_model=OrderPublic, responses=problem_responses(401, 404, 422))
async def get_order(order_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> OrderPublic:
    """One order with its history (owner or admin; anyone else gets 404)."""
    order = await session.get(Order, order_id)
    if order is None or (not user.is_admin and order.user_id != user.user_id):
        raise NotFound(f"Order {order_id} does not exist.")
    return OrderPublic.of(order)


async def _act(
    session: SessionDep, order_id: uuid.UUID, user_id: uuid.UUID | None, trigger: Trigger, reason: str
) -> OrderPublic:
    order = await load_for_update(session, order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        await session.rollback()
        raise NotFound(f"Order {order_id} does not exist.")
    try:
        await advance(session, order, trigger, reason)
    except TransitionNotAllowed as exc:
        await session.rollback()
        raise Conflict(str(exc), slug="transition-not-allowed", current_status=exc.status.value) from None
    await session.commit()
    return OrderPublic.of(order)


_ACTION_ERRORS = problem_responses(401, 403, 404, 409, 422)


@router.post("/{order_id}/cancel", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def cancel_order(order_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> OrderPublic:
    """Cancel (owner or admin) while PENDING, AWAITING_PAYMENT or PAID; a paid order is refunded and its
    units go back on the shelf. After shipping: 409."""
    who = "admin" if user.is_admin else "customer"
    return await _act(
        session, order_id, None if user.is_admin else user.user_id, Trigger.CANCEL, f"cancelled by {who}"
    )


@router.post("/{order_id}/ship", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def ship_order(order_id: uuid.UUID, _: AdminUser, session: SessionDep) -> OrderPublic:
    """Mark a PAID order shipped (admin)."""
    return await _act(session, order_id, None, Trigger.SHIP, "shipped")


@router.post("/{order_id}/deliver", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def deliver_order(order_id: uuid.UUID, _: AdminUser, session: SessionDep) -> OrderPublic:
    """Mark a SHIPPED order delivered (admin)."""
    return await _act(session, order_id, None, Trigger.DELIVER, "delivered")
