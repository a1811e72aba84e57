"""The shop's catalog: the home page, search and filters, a product with its availability and reviews."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from web_service.clients import ApiError, ServiceDown
from web_service.deps import ApiDep, Csrf, SignedInApi, WebContextDep

router = APIRouter(dependencies=[Csrf])

#: The catalog's filters are the API's own parameters (docs/api.md, "product-service"), kept in the URL.
CATALOG_PARAMS = ("q", "category_id", "min_price_cents", "max_price_cents", "sort", "limit", "offset")
PAGE_SIZE = 12
SORTS = {
    "": "Default",
    "name": "Name A–Z",
    "-name": "Name Z–A",
    "price": "Price, low to high",
    "-price": "Price, high to low",
    "-created_at": "Newest first",
}
PRICE_STEPS = (500, 1000, 2500, 5000, 10000, 25000)  # the price filter's choices, in cents


async def _categories(api: ApiDep) -> list[dict[str, Any]]:
    """The category filter; empty (the filter hidden) when the catalog cannot list them."""
    try:
        return (await api.products.categories(limit=100))["items"]
    except (ApiError, ServiceDown):
        return []


@router.get("/", summary="Home: the newest products and the categories.")
async def home(request: Request, ctx: WebContextDep, api: ApiDep) -> Response:
    newest = await api.products.search(sort="-created_at", limit=8)
    return await ctx.pages.render(
        request, "shop/home.html", {"products": newest["items"], "categories": await _categories(api)}
    )


@router.get("/products", summary="The catalog: search, category, price range, sort, pages.")
async def catalog(request: Request, ctx: WebContextDep, api: ApiDep) -> Response:
    params = {k: request.query_params[k] for k in CATALOG_PARAMS if request.query_params.get(k)}
    params.setdefault("limit", str(PAGE_SIZE))
    error = None
    try:
        page = await api.products.search(**params)
    except ApiError as exc:
        if exc.status != 422:
            raise
        error = exc.detail
        page = {"items": [], "total": 0, "limit": PAGE_SIZE, "offset": 0}
    categories = await _categories(api)
    return await ctx.pages.render(
        request,
        "shop/catalog.html",
        {
            "page": page,
            "params": params,
            "error": error,
            "categories": categories,
            "category_names": {c["id"]: c["name"] for c in categories},
            "sorts": SORTS,
            "price_steps": PRICE_STEPS,
        },
        status_code=422 if error else 200,
    )


async def availability(api: ApiDep, product_id: str) -> dict[str, Any] | None:
    """Stock for the product page: ``{available, ...}``, ``{"unknown": reason}`` when inventory cannot say."""
    try:
        return await api.inventory.stock(product_id)
    except ServiceDown:
        return {"unknown": "Availability cannot be checked right now."}
    except ApiError as exc:
        if exc.status == 404:
            return {"unknown": "Not stocked yet."}
        raise


@router.get("/products/{product_id}", summary="A product: price, availability, rating, reviews.")
async def product_page(
    request: Request, product_id: str, ctx: WebContextDep, api: ApiDep, offset: int = 0
) -> Response:
    product = await api.products.get(product_id)
    reviews = await api.products.reviews(product_id, limit=10, offset=max(0, offset))
    return await ctx.pages.render(
        request,
        "shop/product.html",
        {
            "product": product,
            "stock": await availability(api, product_id),
            "reviews": reviews,
            "in_cart": api.visitor.cart.get(product_id, 0),
        },
    )


@router.post("/products/{product_id}/reviews", summary="Write a review (signed in).")
async def write_review(
    request: Request,
    product_id: str,
    ctx: WebContextDep,
    api: SignedInApi,
    rating: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    try:
        await api.products.review(product_id, rating=int(rating or 0), comment=comment)
    except ValueError:
        api.visitor.flash("Choose a rating from 1 to 5 stars.", "error")
    except ApiError as exc:
        if exc.status == 404:
            raise
        api.visitor.flash(
            "You have already reviewed this product." if exc.slug == "already-reviewed" else exc.detail,
            "error",
        )
    else:
        api.visitor.flash("Thank you for your review.", "success")
    return RedirectResponse(f"/products/{product_id}#reviews", status_code=303)
