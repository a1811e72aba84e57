"""Categories: a public list; admins add them."""

from __future__ import annotations

from fastapi import APIRouter, status
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from product_service import services
from product_service.models import Category
from product_service.schemas import CategoryCreate, CategoryPublic

router = APIRouter(tags=["categories"])


@router.get(
    "/categories",
    response_model=Paginated[CategoryPublic],
    summary="List categories by name.",
    responses=problem_responses(422),
)
async def list_categories(session: SessionDep, page: PageDep) -> dict[str, object]:
    return await services.list_categories(session, page)


@router.post(
    "/categories",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryPublic,
    summary="Add a category (admin); names are unique regardless of case.",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_category(body: CategoryCreate, _admin: AdminUser, tx: TransactionDep) -> Category:
    return await services.create_category(tx, body)
