"""The admin: products and categories, stock with its audit trail, orders and fulfilment, users,
notification deliveries. Every page needs an admin; a customer gets 403 (and the services check the
role on every call as well)."""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from web_service.clients import Api, ApiError, ServiceDown
from web_service.deps import AdminApi, Csrf, WebContextDep
from web_service.pages import ORDER_STATUS_WORDS

router = APIRouter(prefix="/admin", dependencies=[Csrf])

LOW_STOCK_BELOW = 5
PRODUCT_FIELDS = ("sku", "name", "description", "price", "currency", "category_id")


def cents(value: str) -> int | None:
    """``"12.50"`` -> 1250; None when it is not a positive amount with at most two decimals."""
    try:
        amount = Decimal(value.strip().replace(",", "."))
    except InvalidOperation:
        return None
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")) or amount > Decimal("10000000"):
        return None
    return int(amount * 100)


async def _names(api: Api, product_ids: list[str]) -> dict[str, str]:
    async def one(pid: str) -> tuple[str, str]:
        try:
            return pid, (await api.products.get(pid, include_archived=True))["name"]
        except (ApiError, ServiceDown):
            return pid, pid

    return dict(await asyncio.gather(*(one(p) for p in dict.fromkeys(product_ids))))


async def _count(call: Any) -> int | None:
    try:
        return int((await call)["total"])
    except (ApiError, ServiceDown):
        return None


@router.get("", summary="The admin's start page.")
async def dashboard(request: Request, ctx: WebContextDep, api: AdminApi) -> Response:
    counts = {
        "low_stock": await _count(api.inventory.stock_list(below=LOW_STOCK_BELOW, limit=1)),
        "to_ship": await _count(api.orders.list(status="PAID", limit=1)),
        "failed_deliveries": await _count(api.notifications.deliveries(status="FAILED", limit=1)),
    }
    return await ctx.pages.render(
        request, "admin/dashboard.html", {"counts": counts, "below": LOW_STOCK_BELOW}
    )


# --- products and categories ------------------------------------------------------------------------


async def _categories(api: Api) -> list[dict[str, Any]]:
    return (await api.products.categories(limit=100))["items"]


@router.get("/products", summary="Products.")
async def products(
    request: Request, ctx: WebContextDep, api: AdminApi, q: str = "", offset: int = 0
) -> Response:
    page = await api.products.search(q=q or None, sort="name", limit=25, offset=max(0, offset))
    return await ctx.pages.render(request, "admin/products.html", {"page": page, "q": q})


async def _product_form(
    request: Request,
    ctx: WebContextDep,
    api: Api,
    form: dict[str, Any],
    *,
    product: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return await ctx.pages.render(
        request,
        "admin/product_form.html",
        {
            "form": form,
            "product": product,
            "categories": await _categories(api),
            "errors": errors or {},
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/products/new", summary="The new product form.")
async def new_product(request: Request, ctx: WebContextDep, api: AdminApi) -> Response:
    return await _product_form(request, ctx, api, {"currency": "EUR"})


def _product_fields(form: dict[str, str], *, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {
        "name": form["name"].strip(),
        "description": form["description"],
        "category_id": form["category_id"] or None,
    }
    price = cents(form["price"])
    if price is None:
        errors["price"] = "A positive amount, like 12.50."
    fields["price_cents"] = price
    if creating:
        fields["sku"] = form["sku"].strip()
        fields["currency"] = form["currency"].strip().upper() or "EUR"
    return fields, errors


async def _read_product_form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {f: str(data.get(f, "")) for f in PRODUCT_FIELDS}


@router.post("/products", summary="Create a product.")
async def create_product(request: Request, ctx: WebContextDep, api: AdminApi) -> Response:
    form = await _read_product_form(request)
    fields, errors = _product_fields(form, creating=True)
    if not errors:
        try:
            product = await api.products.create(**fields)
        except ApiError as exc:
            if exc.status not in (409, 422):
                raise
            errors = exc.field_errors()
            if exc.slug == "sku-taken":
                errors["sku"] = "Another product has this SKU."
            return await _product_form(
                request, ctx, api, form, errors=errors, error=exc.detail, status_code=exc.status
            )
        api.visitor.flash(f"{product['name']} is in the catalog.", "success")
        return RedirectResponse(f"/admin/products/{product['id']}", status_code=303)
    return await _product_form(request, ctx, api, form, errors=errors, status_code=422)


@router.get("/products/{product_id}", summary="Edit a product.")
async def edit_product(request: Request, product_id: str, ctx: WebContextDep, api: AdminApi) -> Response:
    product = await api.products.get(product_id, include_archived=True)
    form = {
        **product,
        "price": f"{Decimal(product['price_cents']) / 100:.2f}",
        "category_id": product.get("category_id") or "",
    }
    return await _product_form(request, ctx, api, form, product=product)


@router.post("/products/{product_id}", summary="Save a product.")
async def save_product(request: Request, product_id: str, ctx: WebContextDep, api: AdminApi) -> Response:
    product = await api.products.get(product_id, include_archived=True)
    form = await _read_product_form(request)
    form["sku"], form["currency"] = product["sku"], product["currency"]
    fields, errors = _product_fields(form, creating=False)
    if not errors:
        try:
            await api.products.update(product_id, **fields)
        except ApiError as exc:
            if exc.status not in (404, 409, 422):
                raise
            return await _product_form(
                request,
                ctx,
                api,
                form,
                product=product,
                errors=exc.field_errors(),
                error=exc.detail,
                status_code=exc.status,
            )
        api.visitor.flash("Saved.", "success")
        return RedirectResponse(f"/admin/products/{product_id}", status_code=303)
    return await _product_form(request, ctx, api, form, product=product, errors=errors, status_code=422)


@router.post("/products/{product_id}/archive", summary="Archive a product (it leaves the catalog).")
async def archive_product(product_id: str, api: AdminApi) -> Response:
    await api.products.archive(product_id)
    api.visitor.flash("Archived: the product left the catalog and can no longer be ordered.", "success")
    return RedirectResponse(f"/admin/products/{product_id}", status_code=303)


@router.get("/categories", summary="Categories.")
async def categories(request: Request, ctx: WebContextDep, api: AdminApi) -> Response:
    return await ctx.pages.render(request, "admin/categories.html", {"categories": await _categories(api)})


@router.post("/categories", summary="Create a category.")
async def create_category(
    request: Request, ctx: WebContextDep, api: AdminApi, name: Annotated[str, Form()] = ""
) -> Response:
    try:
        await api.products.create_category(name.strip())
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        api.visitor.flash("A category with this name exists." if exc.status == 409 else exc.detail, "error")
    else:
        api.visitor.flash(f"Category {name.strip()} created.", "success")
    return RedirectResponse("/admin/categories", status_code=303)


# --- stock ------------------------------------------------------------------------------------------


@router.get("/stock", summary="Stock levels (low stock first).")
async def stock(
    request: Request, ctx: WebContextDep, api: AdminApi, below: str = str(LOW_STOCK_BELOW), offset: int = 0
) -> Response:
    threshold = int(below) if below.isdigit() else None
    page = await api.inventory.stock_list(below=threshold, limit=50, offset=max(0, offset))
    names = await _names(api, [row["product_id"] for row in page["items"]])
    return await ctx.pages.render(
        request,
        "admin/stock.html",
        {"page": page, "names": names, "below": below if threshold is not None else ""},
    )


@router.get("/stock/{product_id}", summary="One product's stock and its audit trail.")
async def stock_item(request: Request, product_id: str, ctx: WebContextDep, api: AdminApi) -> Response:
    level = await api.inventory.stock(product_id)
    trail = await api.inventory.adjustments(product_id, limit=50)
    names = await _names(api, [product_id])
    return await ctx.pages.render(
        request, "admin/stock_item.html", {"stock": level, "trail": trail, "name": names[product_id]}
    )


@router.post("/stock/{product_id}", summary="Adjust stock (with a reason, recorded in the audit trail).")
async def adjust_stock(
    product_id: str,
    api: AdminApi,
    delta: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        change = int(delta)
    except ValueError:
        change = 0
    if change == 0:
        api.visitor.flash("Enter a non-zero number: positive adds stock, negative removes it.", "error")
    else:
        try:
            await api.inventory.adjust(product_id, delta=change, reason=reason.strip() or "adjustment")
        except ApiError as exc:
            if exc.status not in (409, 422):
                raise
            api.visitor.flash(
                "Not enough stock on hand for that (reserved units cannot be removed)."
                if exc.slug == "insufficient-stock"
                else exc.detail,
                "error",
            )
        else:
            api.visitor.flash(f"Stock adjusted by {change:+d}.", "success")
    return RedirectResponse(f"/admin/stock/{product_id}", status_code=303)


# --- orders -----------------------------------------------------------------------------------------


@router.get("/orders", summary="Orders, by status and customer.")
async def orders(
    request: Request,
    ctx: WebContextDep,
    api: AdminApi,
    status: str = "",
    user_id: str = "",
    offset: int = 0,
) -> Response:
    params = {"status": status or None, "user_id": user_id or None}
    error = None
    try:
        page = await api.orders.list(**params, limit=25, offset=max(0, offset))
    except ApiError as exc:
        if exc.status != 422:
            raise
        error, page = exc.detail, {"items": [], "total": 0, "limit": 25, "offset": 0}
    return await ctx.pages.render(
        request,
        "admin/orders.html",
        {"page": page, "status": status, "user_id": user_id, "statuses": ORDER_STATUS_WORDS, "error": error},
        status_code=422 if error else 200,
    )


@router.post("/orders/{order_id}/{action}", summary="Ship or deliver an order.")
async def fulfil(order_id: str, action: str, api: AdminApi, back: Annotated[str, Form()] = "") -> Response:
    if action not in ("ship", "deliver"):
        api.visitor.flash("Unknown action.", "error")
    else:
        try:
            await (api.orders.ship if action == "ship" else api.orders.deliver)(order_id)
        except ApiError as exc:
            if exc.status != 409:
                raise
            api.visitor.flash(
                f"This order cannot be {'shipped' if action == 'ship' else 'delivered'} now.", "error"
            )
        else:
            api.visitor.flash(f"Order {'shipped' if action == 'ship' else 'delivered'}.", "success")
    target = back if back.startswith("/admin/") and not back.startswith("//") else "/admin/orders"
    return RedirectResponse(target, status_code=303)


# --- users ------------------------------------------------------------------------------------------


@router.get("/users", summary="Users.")
async def users(
    request: Request, ctx: WebContextDep, api: AdminApi, q: str = "", offset: int = 0
) -> Response:
    page = await api.users.list(q=q or None, limit=25, offset=max(0, offset))
    return await ctx.pages.render(request, "admin/users.html", {"page": page, "q": q})


@router.post("/users/{user_id}", summary="Change a user's role or deactivate them.")
async def update_user(
    user_id: str,
    api: AdminApi,
    role: Annotated[str, Form()] = "",
    is_active: Annotated[str, Form()] = "",
) -> Response:
    fields: dict[str, Any] = {}
    if role in ("customer", "admin"):
        fields["role"] = role
    if is_active in ("true", "false"):
        fields["is_active"] = is_active == "true"
    try:
        await api.users.update(user_id, **fields)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        api.visitor.flash(
            "You cannot demote or deactivate yourself." if exc.slug == "self-lockout" else exc.detail, "error"
        )
    else:
        api.visitor.flash("User updated.", "success")
    return RedirectResponse("/admin/users", status_code=303)


# --- notification deliveries --------------------------------------------------------------------------


@router.get("/deliveries", summary="Notification deliveries (failed ones can be retried).")
async def deliveries(
    request: Request, ctx: WebContextDep, api: AdminApi, status: str = "", offset: int = 0
) -> Response:
    page = await api.notifications.deliveries(status=status or None, limit=50, offset=max(0, offset))
    return await ctx.pages.render(request, "admin/deliveries.html", {"page": page, "status": status})


@router.post("/deliveries/{delivery_id}/retry", summary="Send a failed delivery again.")
async def retry_delivery(delivery_id: str, api: AdminApi) -> Response:
    try:
        await api.notifications.retry(delivery_id)
    except ApiError as exc:
        if exc.status != 409:
            raise
        api.visitor.flash("Only a failed or skipped delivery can be retried.", "error")
    else:
        api.visitor.flash("The delivery is queued again.", "success")
    return RedirectResponse("/admin/deliveries", status_code=303)
