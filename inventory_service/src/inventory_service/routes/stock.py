"""Stock levels (public) and admin adjustments with their audit trail (docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from inventory_service import services
from inventory_service.context import InventoryContextDep
from inventory_service.schemas import AdjustmentCreate, AdjustmentResult, MovementPublic, StockPublic

router = APIRouter(prefix="/stock", tags=["stock"])


@router.get("/{product_id}", response_model=StockPublic, responses=problem_responses(404, 422))
async def get_stock(product_id: uuid.UUID, session: SessionDep) -> StockPublic:
    """Stock of one product: on hand, reserved for unpaid orders, available to order."""
    return StockPublic.of(await services.get_stock(session, product_id))


@router.get("", response_model=Paginated[StockPublic], responses=problem_responses(401, 403, 422))
async def list_stock(
    _: AdminUser,
    session: SessionDep,
    page: PageDep,
    below: Annotated[
        int | None, Query(ge=0, le=1_000_000_000, description="Only products with available < below.")
    ] = None,
) -> dict:
    """Stock of every product (admin), lowest availability first; ``below`` keeps those under N."""
    rows, total = await services.list_stock(session, page, below)
    return page.wrap([StockPublic.of(stock) for stock in rows], total)


@router.post(
    "/{product_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=AdjustmentResult,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def adjust_stock(
    product_id: uuid.UUID,
    body: AdjustmentCreate,
    admin: AdminUser,
    tx: TransactionDep,
    ctx: InventoryContextDep,
) -> AdjustmentResult:
    """Add (delta > 0) or remove (delta < 0) units on hand; 409 when on hand would fall below what is
    reserved or below zero."""
    movement, stock = await services.adjust_stock(
        tx, ctx, product_id, body.delta, body.reason, actor_id=admin.user_id
    )
    return AdjustmentResult(
        **MovementPublic.model_validate(movement, from_attributes=True).model_dump(),
        stock=StockPublic.of(stock),
    )


@router.get(
    "/{product_id}/adjustments",
    response_model=Paginated[MovementPublic],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_adjustments(product_id: uuid.UUID, _: AdminUser, session: SessionDep, page: PageDep) -> dict:
    """The audit trail of on hand (admin), newest first: adjustments, sales and restocks."""
    rows, total = await services.list_movements(session, page, product_id)
    return page.wrap([MovementPublic.model_validate(m, from_attributes=True) for m in rows], total)
