"""Customer reviews; each keeps the product's ``rating_avg`` / ``rating_count`` exact."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from mart_common.deps import CurrentUser, PageDep, Paginated, SessionDep
from mart_common.problems import Conflict, NotFound, problem_responses
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.models import Product, Review, ReviewCreate, ReviewPublic

router = APIRouter(tags=["reviews"])


async def _listed_product(session: AsyncSession, product_id: uuid.UUID, *, lock: bool = False) -> Product:
    query = select(Product).where(Product.id == product_id)
    if lock:
        query = query.with_for_update()
    product = await session.scalar(query)
    if product is None or product.archived:
        raise NotFound("No such product.")
    return product


@router.post(
    "/products/{product_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    summary="Review a product (any signed-in user, once per product).",
    responses=problem_responses(401, 404, 409, 422),
)
async def create_review(
    product_id: uuid.UUID, body: ReviewCreate, principal: CurrentUser, session: SessionDep
) -> Review:
    # The product row is locked first: concurrent reviews of one product recompute in turn, never from
    # a snapshot missing the other's review.
    product = await _listed_product(session, product_id, lock=True)
    duplicate = Conflict("You have already reviewed this product.", slug="already-reviewed")
    existing = await session.scalar(
        select(Review.id).where(Review.product_id == product_id, Review.user_id == principal.user_id)
    )
    if existing is not None:
        raise duplicate
    review = Review(
        product_id=product_id, user_id=principal.user_id, rating=body.rating, comment=body.comment
    )
    session.add(review)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise duplicate from exc
    count, avg = (
        await session.execute(
            select(func.count(Review.id), func.avg(Review.rating)).where(Review.product_id == product_id)
        )
    ).one()
    product.rating_count = int(count)
    product.rating_avg = round(float(avg or 0), 4)
    await session.commit()
    return review


@router.get(
    "/products/{product_id}/reviews",
    response_model=Paginated[ReviewPublic],
    summary="Reviews of a product, newest first.",
    responses=problem_responses(404, 422),
)
async def list_reviews(product_id: uuid.UUID, session: SessionDep, page: PageDep) -> dict[str, object]:
    await _listed_product(session, product_id)
    query = (
        select(Review).where(Review.product_id == product_id).order_by(Review.created_at.desc(), Review.id)
    )
    return await page.of(session, query)
