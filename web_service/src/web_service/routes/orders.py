"""My orders, one order's page (live through PENDING -> AWAITING_PAYMENT -> PAID, or REJECTED / CANCELLED
with the reason), paying, cancelling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sse_starlette import EventSourceResponse

from web_service.clients import Api, ApiError, ServiceDown, SignInRequired
from web_service.deps import Csrf, SignedInApi, WebContextDep
from web_service.live import StopWatching, watch_order
from web_service.pages import Pages

router = APIRouter(dependencies=[Csrf])

#: A live stream ends this long before its access token expires (the browser reconnects, and the new
#: request refreshes the token before streaming).
STREAM_TOKEN_MARGIN_S = 60.0
CANCELLABLE = {"PENDING", "AWAITING_PAYMENT", "PAID"}


async def order_view(api: Api, order_id: str, settings: Any) -> dict[str, Any]:
    """What the order page shows: the order (its lines carry the products' names) and its payment."""
    order = await api.orders.get(order_id)
    names = {item["product_id"]: item["product_name"] for item in order["items"]}
    payment = None
    payment_error = None
    try:
        payments = await api.payments.for_order(order_id)
        payment = payments[0] if payments else None
    except ServiceDown as exc:
        payment_error = f"Payments cannot be shown right now ({exc.words} unavailable)."
    stripe_ready = bool(payment and payment.get("provider") == "stripe" and settings.stripe_publishable_key)
    return {
        "order": order,
        "names": names,
        "payment": payment,
        "payment_error": payment_error,
        "stripe_ready": stripe_ready,
        "cancellable": order["status"] in CANCELLABLE,
    }


@router.get("/orders", summary="My orders.")
async def my_orders(request: Request, ctx: WebContextDep, api: SignedInApi, offset: int = 0) -> Response:
    page = await api.orders.list(limit=20, offset=max(0, offset))
    return await ctx.pages.render(request, "orders/list.html", {"page": page})


@router.get("/orders/{order_id}", summary="One order, updated live.")
async def order_page(request: Request, order_id: str, ctx: WebContextDep, api: SignedInApi) -> Response:
    view = await order_view(api, order_id, ctx.settings)
    return await ctx.pages.render(request, "orders/order.html", view)


def _status_html(pages: Pages, api: Api, view: dict[str, Any], settings: Any) -> str:
    return pages.fragment("orders/_status.html", csrf_token=api.visitor.csrf_token, settings=settings, **view)


@router.get("/orders/{order_id}/live", summary="Server-Sent Events: the order's status as it changes.")
async def order_live(request: Request, order_id: str, ctx: WebContextDep, api: SignedInApi) -> Response:
    first = await order_view(api, order_id, ctx.settings)  # 404 for someone else's order, before streaming

    async def read() -> dict[str, Any] | None:
        try:
            return await order_view(api, order_id, ctx.settings)
        except ServiceDown:
            return None  # keep what the page shows; try again on the next event
        except (ApiError, SignInRequired) as exc:
            raise StopWatching from exc

    async def stream() -> AsyncIterator[dict[str, str]]:
        api.may_refresh = False  # the response has started: its cookie can no longer change
        updates = watch_order(
            ctx.feed,
            order_id,
            first,
            read,
            render=lambda view: _status_html(ctx.pages, api, view, ctx.settings),
            # the browser reconnects; that request refreshes the token first
            expired=lambda: api.visitor.access_expires_in() < STREAM_TOKEN_MARGIN_S,
        )
        async for html in updates:
            yield {"event": "status", "data": html}

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})


async def _pending_payment(api: Api, order_id: str) -> dict[str, Any] | None:
    payments = await api.payments.for_order(order_id)
    return next((p for p in payments if p["status"] == "REQUIRES_PAYMENT"), None)


@router.post("/orders/{order_id}/pay", summary="The fake provider's outcome: pay or decline.")
async def pay(order_id: str, api: SignedInApi, outcome: Annotated[str, Form()] = "succeeded") -> Response:
    if outcome not in ("succeeded", "failed"):
        api.visitor.flash("Choose Pay or Decline.", "error")
        return RedirectResponse(f"/orders/{order_id}", status_code=303)
    payment = await _pending_payment(api, order_id)
    if payment is None:
        api.visitor.flash("This order has no payment waiting.", "error")
    else:
        try:
            await api.payments.simulate(payment["id"], outcome)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
            api.visitor.flash(
                "Payments are taken by Stripe here."
                if exc.status == 404
                else "This payment is no longer waiting.",
                "error",
            )
    return RedirectResponse(f"/orders/{order_id}", status_code=303)


@router.post("/orders/{order_id}/cancel", summary="Cancel the order (a paid order is refunded).")
async def cancel(order_id: str, api: SignedInApi) -> Response:
    try:
        order = await api.orders.cancel(order_id)
    except ApiError as exc:
        if exc.status != 409:
            raise
        api.visitor.flash("This order can no longer be cancelled.", "error")
    else:
        refund = (
            " Your payment will be refunded."
            if any(h["status"] == "PAID" for h in order.get("history", []))
            else ""
        )
        api.visitor.flash("Your order is cancelled." + refund, "success")
    return RedirectResponse(f"/orders/{order_id}", status_code=303)


@router.get("/orders/{order_id}/payment-intent", summary="Stripe: what the Payment Element needs (JSON).")
async def payment_intent(order_id: str, ctx: WebContextDep, api: SignedInApi) -> Response:
    payment = await _pending_payment(api, order_id)
    key = ctx.settings.stripe_publishable_key
    if payment is None or payment.get("provider") != "stripe" or not key or not payment.get("client_secret"):
        return JSONResponse({"detail": "No Stripe payment is waiting for this order."}, status_code=404)
    return JSONResponse(
        {
            "publishable_key": key,
            "client_secret": payment["client_secret"],
            "return_url": f"/orders/{order_id}",
        },
        headers={"Cache-Control": "no-store"},
    )
