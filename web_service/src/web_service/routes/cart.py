"""The cart (kept in the session cookie: it survives reloads and signing in) and checkout.

Checkout places the order with an ``Idempotency-Key`` drawn when the checkout page is rendered: a double
click or a resubmitted form sends the same key, and the order service answers the first order again
instead of making a second (docs/api.md, "order-service").
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from web_service.clients import Api, ApiError, ServiceDown
from web_service.deps import ApiDep, Csrf, SignedInApi, WebContextDep
from web_service.session import CART_MAX_LINES, CART_MAX_QUANTITY

router = APIRouter(dependencies=[Csrf])

ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "country")


def _quantity(value: str) -> int | None:
    try:
        n = int(value)
    except ValueError:
        return None
    return n if 0 <= n <= CART_MAX_QUANTITY else None


async def cart_lines(api: Api) -> tuple[list[dict[str, Any]], list[str]]:
    """The cart's lines with each product and its availability; and the problems that block checkout."""
    lines: list[dict[str, Any]] = []
    problems: list[str] = []
    for product_id, quantity in api.visitor.cart.items():
        try:
            product = await api.products.get(product_id)
        except ApiError as exc:
            if exc.status not in (404, 422):
                raise
            problems.append("A product in your cart is no longer sold; remove it to check out.")
            lines.append({"product": None, "product_id": product_id, "quantity": quantity, "available": None})
            continue
        try:
            available: int | None = int((await api.inventory.stock(product_id))["available"])
        except ServiceDown:
            available = None  # cannot check now: the order service's saga decides
        except ApiError as exc:
            if exc.status != 404:
                raise
            available = 0
        if available is not None and available < quantity:
            problems.append(
                f"{product['name']} is out of stock."
                if available == 0
                else f"Only {available} of {product['name']} left."
            )
        lines.append(
            {"product": product, "product_id": product_id, "quantity": quantity, "available": available}
        )
    return lines, problems


def _total(lines: list[dict[str, Any]]) -> tuple[int, str]:
    known = [line for line in lines if line["product"]]
    total = sum(line["product"]["price_cents"] * line["quantity"] for line in known)
    return total, (known[0]["product"]["currency"] if known else "EUR")


@router.get("/cart", summary="The cart.")
async def cart(request: Request, ctx: WebContextDep, api: ApiDep) -> Response:
    lines, problems = await cart_lines(api)
    total, currency = _total(lines)
    return await ctx.pages.render(
        request,
        "shop/cart.html",
        {"lines": lines, "problems": problems, "total": total, "currency": currency},
    )


@router.post("/cart", summary="Add to the cart, change a quantity, or remove a line (quantity 0).")
async def change_cart(
    request: Request,
    api: ApiDep,
    product_id: Annotated[str, Form()],
    quantity: Annotated[str, Form()] = "1",
    mode: Annotated[str, Form()] = "add",
) -> Response:
    n = _quantity(quantity)
    back = "/cart" if mode == "set" else f"/products/{product_id}"
    try:
        uuid.UUID(product_id)
    except ValueError:
        api.visitor.flash("That product does not exist.", "error")
        return RedirectResponse("/cart", status_code=303)
    if n is None:
        api.visitor.flash(f"Choose a quantity from 1 to {CART_MAX_QUANTITY}.", "error")
        return RedirectResponse(back, status_code=303)
    if mode == "add":
        if n == 0:
            return RedirectResponse(back, status_code=303)
        n = api.visitor.cart.get(product_id, 0) + n
    if not api.visitor.set_cart_line(product_id, n):
        api.visitor.flash(f"A cart holds at most {CART_MAX_LINES} different products.", "error")
    elif mode == "add":
        api.visitor.flash("Added to your cart.", "success")
    return RedirectResponse(back, status_code=303)


async def _checkout_page(
    request: Request,
    ctx: WebContextDep,
    lines: list[dict[str, Any]],
    problems: list[str],
    *,
    blocked: bool,
    address: dict[str, str],
    errors: dict[str, str] | None = None,
    idempotency_key: str = "",
    status_code: int = 200,
) -> Response:
    """The checkout form; ``blocked``: the cart cannot be ordered as it is (the button is disabled)."""
    total, currency = _total(lines)
    return await ctx.pages.render(
        request,
        "shop/checkout.html",
        {
            "lines": lines,
            "problems": problems,
            "total": total,
            "currency": currency,
            "address": address,
            "errors": errors or {},
            "blocked": blocked,
            "idempotency_key": idempotency_key or str(uuid.uuid4()),
        },
        status_code=status_code,
    )


@router.get("/checkout", summary="Checkout: the shipping address (signed in).")
async def checkout(request: Request, ctx: WebContextDep, api: SignedInApi) -> Response:
    if not api.visitor.cart:
        return RedirectResponse("/cart", status_code=303)
    lines, problems = await cart_lines(api)
    name = (api.visitor.user or {}).get("name", "")
    return await _checkout_page(request, ctx, lines, problems, blocked=bool(problems), address={"name": name})


@router.post("/checkout", summary="Place the order (with the form's Idempotency-Key).")
async def place_order(
    request: Request,
    ctx: WebContextDep,
    api: SignedInApi,
    idempotency_key: Annotated[str, Form()] = "",
) -> Response:
    placed = api.visitor.placed_order(idempotency_key)
    if placed is not None:  # this form was already placed (a resubmission after the cart was emptied)
        return RedirectResponse(f"/orders/{placed}", status_code=303)
    form = await request.form()
    address = {f: str(form.get(f, "")).strip() for f in ADDRESS_FIELDS}
    lines, problems = await cart_lines(api)
    blocked = bool(problems) or not lines
    errors = {f: "Required." for f in ("line1", "city", "postal_code", "country") if not address[f]}
    if not lines:
        problems.append("Your cart is empty.")
    try:
        key = str(uuid.UUID(idempotency_key))
    except ValueError:
        key = ""
        problems.append("This checkout form has expired; please check the order and place it again.")
    if not problems and not errors:
        try:
            order = await api.orders.place(
                items=[{"product_id": line["product_id"], "quantity": line["quantity"]} for line in lines],
                shipping_address={k: v for k, v in address.items() if v},
                idempotency_key=key,
            )
        except ApiError as exc:
            if exc.status != 422:
                raise
            errors = exc.field_errors()
            problems.append(exc.detail)
        else:
            api.visitor.clear_cart()
            api.visitor.remember_order(key, order["id"])
            api.visitor.flash("Thank you! Your order is placed.", "success")
            return RedirectResponse(f"/orders/{order['id']}", status_code=303)
    return await _checkout_page(
        request, ctx, lines, problems, blocked=blocked, address=address, errors=errors,
        idempotency_key=key, status_code=422,
    )  # fmt: skip
