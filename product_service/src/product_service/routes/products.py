"""The catalog: public search and reads; admins create, update and archive products."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from mart_common.auth import OptionalToken, current_principal
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep, paged
from mart_common.problems import Conflict, NotFound, Problem, Unprocessable, problem_responses
from mart_common.responses import PRIVATE, ResponseCache, answer, serialise
from pydantic import TypeAdapter
from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from product_service import events
from product_service.models import (
    MAX_PRICE_CENTS,
    NO_NUL,
    Category,
    Product,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    SortOrder,
    utcnow,
)

router = APIRouter(tags=["products"])


_SORTS = {
    "name": (func.lower(Product.name).asc(),),
    "-name": (func.lower(Product.name).desc(),),
    "price": (Product.price_cents.asc(),),
    "-price": (Product.price_cents.desc(),),
    "-created_at": (Product.created_at.desc(),),
}

PriceQuery = Annotated[int | None, Query(ge=0, le=MAX_PRICE_CENTS)]

_PUBLIC_COLUMNS = [Product.__table__.c[name] for name in ProductPublic.model_fields]
_PAGE = TypeAdapter(Paginated[ProductPublic])
_ONE = TypeAdapter(ProductPublic)
_ONE_QUERY = select(*_PUBLIC_COLUMNS).where(Product.id == bindparam("product_id"))


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _product_for_update(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    # FOR UPDATE on PostgreSQL: concurrent changes of one product queue up, so versions never collide.
    return await session.scalar(select(Product).where(Product.id == product_id).with_for_update())


async def _check_category(session: AsyncSession, category_id: uuid.UUID | None) -> None:
    if category_id is not None and await session.get(Category, category_id) is None:
        raise Unprocessable(f"There is no category {category_id}.", slug="unknown-category")


def _sku_taken(sku: str) -> Conflict:
    return Conflict(f"A product with sku {sku!r} already exists.", slug="sku-taken")


@router.get(
    "/products",
    response_model=Paginated[ProductPublic],
    summary="Search the catalog (archived products are hidden).",
    responses=problem_responses(422),
)
async def search_products(
    request: Request,
    page: PageDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200, pattern=NO_NUL, description="Case-insensitive match on name, description or sku."
        ),
    ] = None,
    category_id: uuid.UUID | None = None,
    min_price_cents: PriceQuery = None,
    max_price_cents: PriceQuery = None,
    sort: Annotated[SortOrder, Query(description="Order of the results.")] = "-created_at",
) -> Response:
    if min_price_cents is not None and max_price_cents is not None and min_price_cents > max_price_cents:
        raise Unprocessable("min_price_cents is above max_price_cents.", slug="bad-price-range")
    text = q.strip() if q else ""
    query = _search_query(
        sort, bool(text), category_id is not None, min_price_cents is not None, max_price_cents is not None
    )
    values = {
        "pattern": _like(text) if text else None,
        "category_id": category_id,
        "min_price": min_price_cents,
        "max_price": max_price_cents,
    }
    params = {k: v for k, v in values.items() if v is not None}

    async def load() -> dict[str, Any]:
        async with request.app.state.runtime.db.read() as session:
            rows, total = await page.rows(session, query, params)
        return page.wrap(rows, total)

    key = ("search", sort, text, category_id, min_price_cents, max_price_cents, page.limit, page.offset)
    return await catalog_cache(request).json(request, key, _PAGE, load)


@functools.cache
def _search_query(sort: str, text: bool, category: bool, min_price: bool, max_price: bool) -> Select[Any]:
    """The catalog search for one combination of filters, built once: plain rows, not ORM objects (a
    read-only page needs no identity map), values as bound parameters (docs/performance.md)."""
    conditions = [Product.archived.is_(False)]
    if text:
        pattern = bindparam("pattern")
        conditions.append(
            or_(
                func.lower(Product.name).like(pattern, escape="\\"),
                func.lower(Product.description).like(pattern, escape="\\"),
                func.lower(Product.sku).like(pattern, escape="\\"),
            )
        )
    if category:
        conditions.append(Product.category_id == bindparam("category_id"))
    if min_price:
        conditions.append(Product.price_cents >= bindparam("min_price"))
    if max_price:
        conditions.append(Product.price_cents <= bindparam("max_price"))
    # id: a stable order across pages
    return paged(select(*_PUBLIC_COLUMNS).where(*conditions).order_by(*_SORTS[sort], Product.id))


@router.get(
    "/products/{product_id}",
    response_model=ProductPublic,
    summary="One product (archived ones only for admins, with include_archived=true).",
    responses=problem_responses(401, 403, 404, 422),
)
async def read_product(
    product_id: uuid.UUID,
    request: Request,
    credentials: OptionalToken,
    include_archived: Annotated[bool, Query(description="Admins: also return an archived product.")] = False,
) -> Response:
    if include_archived:
        principal = await current_principal(request, credentials)
        if not principal.is_admin:
            raise Problem(403, "include_archived needs the admin role.")

    async def load() -> Any:
        async with request.app.state.runtime.db.read() as session:
            row = (await session.execute(_ONE_QUERY, {"product_id": product_id})).one_or_none()
        if row is None or (row.archived and not include_archived):
            raise NotFound("No such product.")
        return row

    if include_archived:  # an admin's view: neither cached here nor by anyone else
        body, etag = serialise(_ONE, await load())
        return answer(request, body, etag, cache=PRIVATE)
    return await catalog_cache(request).json(request, ("product", product_id), _ONE, load)


def catalog_cache(request: Request) -> ResponseCache:
    """Public catalog answers, kept while no catalog write commits (bootstrap: the catalog feed)."""
    return request.app.state.runtime.extras["catalog_cache"]


@router.post(
    "/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    summary="Add a product (admin).",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_product(body: ProductCreate, _admin: AdminUser, session: SessionDep) -> Product:
    await _check_category(session, body.category_id)
    if await session.scalar(select(Product.id).where(Product.sku == body.sku)) is not None:
        raise _sku_taken(body.sku)
    product = Product(**body.model_dump())
    session.add(product)
    try:
        await session.flush()
        await events.product_created(session, product)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise _sku_taken(body.sku) from exc
    return product


@router.patch(
    "/products/{product_id}",
    response_model=ProductPublic,
    summary="Change some fields of a product (admin); archived products cannot be changed (404).",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_product(
    product_id: uuid.UUID, body: ProductUpdate, _admin: AdminUser, session: SessionDep
) -> Product:
    product = await _product_for_update(session, product_id)
    if product is None or product.archived:
        raise NotFound("No such product.")
    changes = body.model_dump(exclude_unset=True)
    for field in ("sku", "name", "description", "price_cents", "currency"):
        if field in changes and changes[field] is None:
            raise Unprocessable(f"{field} cannot be null.")
    if "category_id" in changes and changes["category_id"] != product.category_id:
        await _check_category(session, changes["category_id"])
    if "sku" in changes and changes["sku"] != product.sku:
        taken = await session.scalar(select(Product.id).where(Product.sku == changes["sku"]))
        if taken is not None:
            raise _sku_taken(changes["sku"])
    changed = {k: v for k, v in changes.items() if getattr(product, k) != v}
    if not changed:
        return product  # Nothing new: no version bump, no event.
    for field, value in changed.items():
        setattr(product, field, value)
    product.version += 1
    product.updated_at = utcnow()
    try:
        await session.flush()
        await events.product_updated(session, product)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise _sku_taken(str(changes.get("sku"))) from exc
    return product


@router.delete(
    "/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Archive a product (admin): it leaves listings and can no longer be ordered. Idempotent.",
    responses=problem_responses(401, 403, 404, 422),
)
async def archive_product(product_id: uuid.UUID, _admin: AdminUser, session: SessionDep) -> Response:
    product = await _product_for_update(session, product_id)
    if product is None:
        raise NotFound("No such product.")
    if not product.archived:
        product.archived = True
        product.version += 1
        product.updated_at = utcnow()
        await events.product_archived(session, product)
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
