"""The web front's wiring: its routes, its session cookie, its security headers, the shared request
middleware (correlation id, traces, metrics), health and readiness, and what each error looks like as a
page. Wiring only: pages live in routes/, the API clients in clients/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from mart_common.bus import EventBus, create_bus
from mart_common.heap import freeze_startup_heap
from mart_common.observability.logs import configure_logging
from mart_common.observability.middleware import RequestContextMiddleware
from mart_common.observability.tracing import tracing_for
from mart_common.service import install_operations
from starlette.exceptions import HTTPException as StarletteHTTPException

from web_service.clients import ApiError, ServiceDown, SignInRequired
from web_service.context import WebContext, open_context
from web_service.deps import CsrfRefused, Forbidden, get_visitor
from web_service.routes import account, admin, cart, console, orders, shop
from web_service.routes.account import login_url
from web_service.security import SecurityHeadersMiddleware
from web_service.session import SessionCookieMiddleware
from web_service.settings import WebSettings

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE_PREFIX = "mart_"  # the session's cookies: mart_auth, mart_csrf, mart_cart, mart_placed, mart_flash
#: Every page of the web front, by area.
ROUTERS = (shop.router, cart.router, orders.router, account.router, admin.router, console.router)
SESSION_MAX_AGE_S = 7 * 24 * 3600  # the refresh token's life: a sign-in lasts as long as it can be renewed


def build_app(
    settings: WebSettings,
    *,
    bus: EventBus | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The web front. ``bus``: share a running bus (the embedded mart's); by default the settings choose
    one and the app owns it. ``transport``: how the API clients reach the gateway (in-process in the
    embedded mart; HTTP otherwise)."""
    configure_logging(settings.log_level, settings.log_json)
    tracing = tracing_for(settings.service_name, "kafka" if settings.event_bus == "kafka" else "inprocess")
    owns_bus = bus is None
    the_bus = bus or create_bus(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_context(settings, the_bus, owns_bus=owns_bus, transport=transport) as ctx:
            app.state.web = ctx
            if owns_bus:
                freeze_startup_heap()
            log.info("service_started", service=settings.service_name)
            yield

    app = FastAPI(
        title="Online Mart — web",
        description="The shop, the admin and the event console (server-rendered pages; docs/web.md).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=tracing.fastapi_telemetry(),
    )
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def started() -> bool:
        ctx: WebContext | None = getattr(app.state, "web", None)
        return bool(ctx and ctx.started)

    # Ready once started: a service that is down makes only the pages that need it say so.
    metrics = install_operations(app, settings.service_name, {"web": started})
    _install_error_pages(app)
    # Pure ASGI layers, outermost last.
    app.add_middleware(
        SessionCookieMiddleware,
        secret_key=settings.resolved_cookie_secret(),
        prefix=COOKIE_PREFIX,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        secure=settings.cookie_secure,
    )
    app.add_middleware(
        RequestContextMiddleware, service=settings.service_name, tracing=tracing, metrics=metrics
    )
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    return app


def _install_error_pages(app: FastAPI) -> None:
    """Each failure as a page a shopper understands, with the status it deserves."""

    async def page(request: Request, template: str, status: int, **context: object) -> Response:
        get_visitor(request)
        ctx: WebContext = request.app.state.web
        return await ctx.pages.render(request, template, dict(context), status_code=status)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:  # after signing in, back to the page the form was on (never the form's own action)
            target = urlsplit(request.headers.get("referer", "/")).path or "/"
        return RedirectResponse(login_url(target), status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden) -> Response:
        return await page(request, "errors/forbidden.html", 403)

    @app.exception_handler(CsrfRefused)
    async def csrf(request: Request, _exc: CsrfRefused) -> Response:
        return await page(request, "errors/csrf.html", 403)

    @app.exception_handler(ServiceDown)
    async def down(request: Request, exc: ServiceDown) -> Response:
        log.warning("service_unavailable", service=exc.service, reason=exc.reason, path=request.url.path)
        return await page(request, "errors/unavailable.html", 503, words=exc.words)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> Response:
        if exc.status in (404, 422) and request.method == "GET":
            return await page(request, "errors/not_found.html", 404)
        if exc.status == 403:
            return await page(request, "errors/forbidden.html", 403)
        status = exc.status if 400 <= exc.status < 500 else 502
        return await page(request, "errors/refused.html", status, detail=exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, _exc: RequestValidationError) -> Response:
        return await page(request, "errors/refused.html", 422, detail="Some of what was sent is not valid.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return await page(request, "errors/not_found.html", 404)
        return await page(request, "errors/refused.html", exc.status_code, detail=str(exc.detail))
