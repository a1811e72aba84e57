"""The catalog: public search and reads; admins create, update and archive products."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from mart_common.auth import BEARER_ACCEPTED, optional_principal
from mart_common.deps import AdminUser, PageDep, Paginated, TransactionDep, runtime_of
from mart_common.problems import Problem, problem_responses
from mart_common.responses import PRIVATE, RowJson, answer, serialise

from product_service import services
from product_service.domain import MAX_PRICE_CENTS
from product_service.models import Product
from product_service.schemas import NO_NUL, ProductCreate, ProductPublic, ProductUpdate, SortOrder

router = APIRouter(tags=["products"])

PriceQuery = Annotated[int | None, Query(ge=0, le=MAX_PRICE_CENTS)]

# The public reads answer with bodies serialised once, straight from the rows without validating them
# again (mart_common.responses.RowJson, docs/adr/0021-catalog-reads.md); the catalog cache (context.py)
# keeps them until a catalog write commits. They take no dependency beyond their parameters: the most
# requested path of the mart stays as cheap as it can be.
_PAGE = RowJson(ProductPublic, page=True)
_ONE = RowJson(ProductPublic)


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
            max_length=200,
            pattern=NO_NUL,
            description="Words of the name, sku or description: prefixes match, typos are corrected.",
        ),
    ] = None,
    category_id: uuid.UUID | None = None,
    min_price_cents: PriceQuery = None,
    max_price_cents: PriceQuery = None,
    sort: Annotated[
        SortOrder | None,
        Query(description="Order of the results; default: best match first with q, else -created_at."),
    ] = None,
) -> Response:
    text = q.strip() if q else ""
    runtime = runtime_of(request)
    load = functools.partial(
        services.search_products,
        runtime.db,
        page,
        text,
        category_id,
        min_price_cents,
        max_price_cents,
        sort,
        window=runtime.context.settings.search_window,
    )
    key = ("search", sort, text, category_id, min_price_cents, max_price_cents, page.limit, page.offset)
    return await runtime.context.catalog.json(request, key, _PAGE, load)


@router.get(
    "/products/{product_id}",
    response_model=ProductPublic,
    summary="One product (archived ones only for admins, with include_archived=true).",
    responses=problem_responses(401, 403, 404, 422),
    openapi_extra=BEARER_ACCEPTED,
)
async def read_product(
    product_id: uuid.UUID,
    request: Request,
    include_archived: Annotated[bool, Query(description="Admins: also return an archived product.")] = False,
) -> Response:
    runtime = runtime_of(request)
    if include_archived:  # an admin's view: neither cached here nor by anyone else
        principal = await optional_principal(request)
        if not principal.is_admin:
            raise Problem(403, "include_archived needs the admin role.")
        row = await services.get_product(runtime.db, product_id, include_archived=True)
        body, etag = serialise(_ONE, row)
        return answer(request, body, etag, cache=PRIVATE)
    load = functools.partial(services.get_product, runtime.db, product_id)
    return await runtime.context.catalog.json(request, ("product", product_id), _ONE, load)


@router.post(
    "/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    summary="Add a product (admin).",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_product(body: ProductCreate, _admin: AdminUser, tx: TransactionDep) -> Product:
    return await services.create_product(tx, body)


@router.patch(
    "/products/{product_id}",
    response_model=ProductPublic,
    summary="Change some fields of a product (admin); archived products cannot be changed (404).",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_product(
    product_id: uuid.UUID, body: ProductUpdate, _admin: AdminUser, tx: TransactionDep
) -> Product:
    return await services.update_product(tx, product_id, body)


@router.delete(
    "/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Archive a product (admin): it leaves listings and can no longer be ordered. Idempotent.",
    responses=problem_responses(401, 403, 404, 422),
)
async def archive_product(product_id: uuid.UUID, _admin: AdminUser, tx: TransactionDep) -> Response:
    await services.archive_product(tx, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
