"""Registering, signing in and out, the account page (name, notification preferences) and the in-app
notifications."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from web_service.clients import Api, ApiError, ServiceDown
from web_service.deps import ApiDep, Csrf, SignedInApi, WebContextDep
from web_service.session import TokenPair

log = structlog.get_logger(__name__)
router = APIRouter(dependencies=[Csrf])


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    # browsers read "/\\host" as "//host": no backslash, no control character, one leading slash
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def login_url(next_path: str) -> str:
    return f"/login?next={quote(safe_next(next_path), safe='/')}"


async def _sign_in(api: Api, email: str, password: str) -> None:
    pair = await api.users.login(email=email, password=password)
    api.visitor.sign_in(TokenPair(pair["access_token"], pair["refresh_token"]), email=email, name="")
    api.visitor.rename((await api.users.me()).get("full_name") or "")


@router.get("/login", summary="The sign-in form.")
async def login_form(request: Request, ctx: WebContextDep, api: ApiDep, next: str = "/") -> Response:
    return await ctx.pages.render(request, "account/login.html", {"next": safe_next(next), "email": ""})


@router.post("/login", summary="Sign in.")
async def login(
    request: Request,
    ctx: WebContextDep,
    api: ApiDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        await _sign_in(api, email.strip(), password)
    except ApiError as exc:
        messages = {
            401: "Wrong email or password.",
            403: "This account is deactivated.",
            429: "Too many failed sign-ins; wait a moment and try again.",
        }
        return await ctx.pages.render(
            request,
            "account/login.html",
            {"next": safe_next(next), "email": email, "error": messages.get(exc.status, exc.detail)},
            status_code=exc.status if exc.status in messages else 422,
        )
    api.visitor.flash(f"Welcome back, {api.visitor.user['name'] or email}.", "success")  # type: ignore[index]
    return RedirectResponse(safe_next(next), status_code=303)


@router.get("/register", summary="The registration form.")
async def register_form(request: Request, ctx: WebContextDep, api: ApiDep, next: str = "/") -> Response:
    return await ctx.pages.render(
        request, "account/register.html", {"next": safe_next(next), "form": {}, "errors": {}}
    )


@router.post("/register", summary="Create a customer account and sign in.")
async def register(
    request: Request,
    ctx: WebContextDep,
    api: ApiDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    full_name: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    form = {"email": email.strip(), "full_name": full_name.strip()}
    try:
        await api.users.register(email=form["email"], password=password, full_name=form["full_name"])
        await _sign_in(api, form["email"], password)
    except ApiError as exc:
        errors = exc.field_errors()
        if exc.slug == "email-taken":
            errors["email"] = "An account with this email exists; sign in instead."
        return await ctx.pages.render(
            request,
            "account/register.html",
            {"next": safe_next(next), "form": form, "errors": errors, "error": exc.detail},
            status_code=exc.status if exc.status in (409, 422) else 400,
        )
    api.visitor.flash("Your account is ready.", "success")
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", summary="Sign out (ends this login at the user service).")
async def logout(api: ApiDep) -> Response:
    pair = api.visitor.tokens()
    if pair is not None:
        try:
            await api.users.logout(pair.refresh)
        except (ApiError, ServiceDown) as exc:
            # Signing out of this browser does not depend on the user service; the refresh token, no
            # longer held anywhere, expires on its own.
            log.warning("logout_not_recorded", error=str(exc))
    api.visitor.sign_out()
    api.visitor.flash("You are signed out.", "info")
    return RedirectResponse("/", status_code=303)


@router.get("/account", summary="The account: name and notification preferences.")
async def account(request: Request, ctx: WebContextDep, api: SignedInApi) -> Response:
    me = await api.users.me()
    prefs = await api.notifications.preferences()
    return await ctx.pages.render(request, "account/account.html", {"me": me, "prefs": prefs, "errors": {}})


@router.post("/account", summary="Change name and phone.")
async def update_account(
    request: Request,
    ctx: WebContextDep,
    api: SignedInApi,
    full_name: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
) -> Response:
    try:
        me = await api.users.update_me(full_name=full_name.strip(), phone=phone.strip() or None)
    except ApiError as exc:
        if exc.status != 422:
            raise
        me = await api.users.me()
        prefs = await api.notifications.preferences()
        return await ctx.pages.render(
            request,
            "account/account.html",
            {
                "me": {**me, "full_name": full_name, "phone": phone},
                "prefs": prefs,
                "errors": exc.field_errors(),
            },
            status_code=422,
        )
    api.visitor.rename(me.get("full_name") or "")
    api.visitor.flash("Your details are saved.", "success")
    return RedirectResponse("/account", status_code=303)


@router.post("/account/preferences", summary="Choose the notification channels (email, SMS).")
async def update_preferences(
    api: SignedInApi,
    email: Annotated[str, Form()] = "",
    sms: Annotated[str, Form()] = "",
) -> Response:
    await api.notifications.set_preferences(email=email == "on", sms=sms == "on")
    api.visitor.flash("Your notification preferences are saved.", "success")
    return RedirectResponse("/account", status_code=303)


@router.get("/notifications", summary="My notifications.")
async def notifications(request: Request, ctx: WebContextDep, api: SignedInApi, offset: int = 0) -> Response:
    page = await api.notifications.list(limit=20, offset=max(0, offset))
    return await ctx.pages.render(request, "account/notifications.html", {"page": page})


@router.post("/notifications/{notification_id}/read", summary="Mark a notification as read.")
async def mark_read(notification_id: str, api: SignedInApi) -> Response:
    await api.notifications.mark_read(notification_id)
    return RedirectResponse("/notifications", status_code=303)
