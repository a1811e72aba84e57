"""Route dependencies: the browser behind a request, its API clients, who may see a page, and the CSRF
check every form that changes something passes (``Annotated`` aliases, as in the services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from web_service.clients import Api, SignInRequired
from web_service.context import WebContext, WebContextDep
from web_service.session import Visitor

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Forbidden(Exception):
    """The signed-in user may not see this page (a customer on an admin page)."""


class CsrfRefused(Exception):
    """A form that changes something arrived without this browser's CSRF token, or from another site."""


def get_visitor(request: Request) -> Visitor:
    visitor = getattr(request.state, "visitor", None)
    if visitor is None:
        visitor = request.state.visitor = Visitor(request.session)
    return visitor


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


def client_ip(request: Request) -> str | None:
    """The browser's address, passed on to the services (login throttling counts by client)."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded
    return request.client.host if request.client else None


def get_api(request: Request, ctx: WebContextDep, visitor: VisitorDep) -> Api:
    api = getattr(request.state, "api", None)
    if api is None:
        api = request.state.api = Api(ctx.apis, visitor, ctx.refresher, client_ip(request))
    return api


ApiDep = Annotated[Api, Depends(get_api)]


async def signed_in_api(api: ApiDep) -> Api:
    """The API as a signed-in user (a fresh access token already in hand), or off to the sign-in page."""
    if await api.access_token() is None:
        raise SignInRequired
    return api


SignedInApi = Annotated[Api, Depends(signed_in_api)]


async def admin_api(api: SignedInApi) -> Api:
    """The API as an admin; a customer gets 403 and never the page."""
    if not api.visitor.is_admin:
        raise Forbidden
    return api


AdminApi = Annotated[Api, Depends(admin_api)]


async def check_csrf(request: Request, visitor: VisitorDep) -> None:
    """For every unsafe method: the form's ``csrf_token`` must be this session's, and the browser must
    not say the request comes from another site (``Sec-Fetch-Site``)."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefused
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    if not visitor.csrf_ok(token):
        raise CsrfRefused


Csrf = Depends(check_csrf)

__all__ = [
    "AdminApi",
    "ApiDep",
    "Csrf",
    "CsrfRefused",
    "Forbidden",
    "SignedInApi",
    "VisitorDep",
    "WebContext",
    "WebContextDep",
    "client_ip",
]
