"""Stock levels (public) and admin adjustments with their audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from mart_common.clock import utcnow
from mart_common.deps import AdminUser, PageDep, Paginated, RuntimeDep, SessionDep
from mart_common.problems import Conflict, NotFound, problem_responses
from sqlalchemy import select

from inventory_service import repository
from inventory_service.models import Stock, StockMovement
from inventory_service.schemas import AdjustmentCreate, AdjustmentResult, MovementPublic, StockPublic
from inventory_service.settings import InventorySettings

router = APIRouter(prefix="/stock", tags=["stock"])


async def _stock_or_404(session: SessionDep, product_id: uuid.UUID) -> Stock:
    stock = await session.get(Stock, product_id)
    if stock is None:
        raise NotFound(f"No stock for product {product_id}.")
    return stock


@router.get("/{product_id}", response_model=StockPublic, responses=problem_responses(404, 422))
async def get_stock(product_id: uuid.UUID, session: SessionDep) -> StockPublic:
    """Stock of one product: on hand, reserved for unpaid orders, available to order."""
    return StockPublic.of(await _stock_or_404(session, product_id))


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
    available = Stock.on_hand - Stock.reserved
    where = [] if below is None else [available < below]
    query = select(Stock).where(*where).order_by(available, Stock.product_id)
    return await page.of(session, query, StockPublic.of)


@router.post(
    "/{product_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=AdjustmentResult,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def adjust_stock(
    product_id: uuid.UUID, body: AdjustmentCreate, admin: AdminUser, session: SessionDep, runtime: RuntimeDep
) -> AdjustmentResult:
    """Add (delta > 0) or remove (delta < 0) units on hand; 409 when on hand would fall below what is
    reserved or below zero."""
    settings: InventorySettings = runtime.settings  # type: ignore[assignment]
    try:
        movement = await repository.adjust(
            session,
            product_id,
            body.delta,
            body.reason,
            actor_id=admin.user_id,
            threshold=settings.low_stock_threshold,
            now=utcnow(),
        )
    except repository.UnknownProduct:
        await session.rollback()
        raise NotFound(f"No stock for product {product_id}.") from None
    except repository.StockConflict:
        await session.rollback()
        raise Conflict(
            "On hand would fall below the reserved quantity or below zero.", slug="insufficient-stock"
        ) from None
    await session.commit()
    stock = await _stock_or_404(session, product_id)
    await session.refresh(stock)
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
    await _stock_or_404(session, product_id)
    where = StockMovement.product_id == product_id
    query = (
        select(StockMovement).where(where).order_by(StockMovement.created_at.desc(), StockMovement.id)  # type: ignore[union-attr]
    )
    return await page.of(session, query, lambda m: MovementPublic.model_validate(m, from_attributes=True))
