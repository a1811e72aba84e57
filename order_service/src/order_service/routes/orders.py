"""Orders: place (with Idempotency-Key), read, cancel (owner/admin), ship and deliver (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse
from mart_common.deps import AdminUser, CurrentUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from order_service import services
from order_service.context import OrderContextDep
from order_service.domain import OrderStatus
from order_service.schemas import OrderCreate, OrderPublic

router = APIRouter(prefix="/orders", tags=["orders"])

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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderPublic,
    responses=problem_responses(401, 422),
)
async def place_order(
    body: OrderCreate,
    user: CurrentUser,
    tx: TransactionDep,
    ctx: OrderContextDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Any:
    """Place an order (PENDING); inventory then reserves its lines and the saga takes it from there."""
    placed = await services.place_order(tx, ctx, user, body, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if placed.replayed else None
    return JSONResponse(placed.response, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get("", response_model=Paginated[OrderPublic], responses=problem_responses(401, 422))
async def list_orders(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    user_id: Annotated[uuid.UUID | None, Query(description="Admin only: orders of this user.")] = None,
    status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> dict[str, Any]:
    """Your orders, newest first (admin: everyone's, optionally by ``user_id`` and ``status``)."""
    return await services.list_orders(session, user, page, user_id=user_id, status=status_)


@router.get("/{order_id}", response_model=OrderPublic, responses=problem_responses(401, 404, 422))
async def get_order(order_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> OrderPublic:
    """One order with its history (owner or admin; anyone else gets 404)."""
    return OrderPublic.of(await services.get_order(session, user, order_id))


_ACTION_ERRORS = problem_responses(401, 403, 404, 409, 422)


@router.post("/{order_id}/cancel", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def cancel_order(order_id: uuid.UUID, user: CurrentUser, tx: TransactionDep) -> OrderPublic:
    """Cancel (owner or admin) while PENDING, AWAITING_PAYMENT or PAID; a paid order is refunded and its
    units go back on the shelf. After shipping: 409."""
    return OrderPublic.of(await services.cancel_order(tx, user, order_id))


@router.post("/{order_id}/ship", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def ship_order(order_id: uuid.UUID, _: AdminUser, tx: TransactionDep) -> OrderPublic:
    """Mark a PAID order shipped (admin)."""
    return OrderPublic.of(await services.ship_order(tx, order_id))


@router.post("/{order_id}/deliver", response_model=OrderPublic, responses=_ACTION_ERRORS)
async def deliver_order(order_id: uuid.UUID, _: AdminUser, tx: TransactionDep) -> OrderPublic:
    """Mark a SHIPPED order delivered (admin)."""
    return OrderPublic.of(await services.deliver_order(tx, order_id))
