"""Categories: a public list; admins add them."""

from __future__ import annotations

from fastapi import APIRouter, status
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep
from mart_common.problems import Conflict, problem_responses
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from product_service.models import Category, CategoryCreate, CategoryPublic

router = APIRouter(tags=["categories"])


@router.get(
    "/categories",
    response_model=Paginated[CategoryPublic],
    summary="List categories by name.",
    responses=problem_responses(422),
)
async def list_categories(session: SessionDep, page: PageDep) -> dict[str, object]:
    return await page.of(session, select(Category).order_by(Category.name_key, Category.id))


@router.post(
    "/categories",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryPublic,
    summary="Add a category (admin); names are unique regardless of case.",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_category(body: CategoryCreate, _admin: AdminUser, session: SessionDep) -> Category:
    key = body.name.lower()
    conflict = Conflict(f"A category named {body.name!r} already exists.", slug="category-exists")
    if await session.scalar(select(Category.id).where(Category.name_key == key)) is not None:
        raise conflict
    category = Category(name=body.name, name_key=key, description=body.description)
    session.add(category)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict from exc
    return category
