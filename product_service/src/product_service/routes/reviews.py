"""Customer reviews; each keeps the product's ``rating_avg`` / ``rating_count`` exact."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from mart_common.deps import CurrentUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from product_service import services
from product_service.models import Review
from product_service.schemas import ReviewCreate, ReviewPublic

router = APIRouter(tags=["reviews"])


@router.post(
    "/products/{product_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    summary="Review a product (any signed-in user, once per product).",
    responses=problem_responses(401, 404, 409, 422),
)
async def create_review(
    product_id: uuid.UUID, body: ReviewCreate, principal: CurrentUser, tx: TransactionDep
) -> Review:
    return await services.create_review(tx, product_id, principal.user_id, body)


@router.get(
    "/products/{product_id}/reviews",
    response_model=Paginated[ReviewPublic],
    summary="Reviews of a product, newest first.",
    responses=problem_responses(404, 422),
)
async def list_reviews(product_id: uuid.UUID, session: SessionDep, page: PageDep) -> dict[str, object]:
    return await services.list_reviews(session, product_id, page)
