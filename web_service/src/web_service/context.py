"""What the web front holds while it runs: the API clients' connection pool, the session refresher, the
bus (read by the console and the live order feed) and the page templates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

import httpx
import structlog
from fastapi import Depends, Request
from mart_common.bus import EventBus
from mart_common.tasks import stop_gracefully

from web_service.clients import ServiceApis
from web_service.live import OrderFeed
from web_service.pages import Pages
from web_service.session import Refresher
from web_service.settings import WebSettings

log = structlog.get_logger(__name__)


@dataclass
class WebContext:
    settings: WebSettings
    apis: ServiceApis
    bus: EventBus
    feed: OrderFeed
    pages: Pages
    refresher: Refresher = field(default_factory=Refresher)
    started: bool = False
    _bus_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _bus_started: bool = False

    async def started_bus(self) -> EventBus:
        """The bus, its producer started (re-drive publishes); started on first use, so that a broker that
        is down when the web front starts only affects the console pages that need it."""
        async with self._bus_lock:
            if not self._bus_started:
                await self.bus.start()
                self._bus_started = True
        return self.bus


@asynccontextmanager
async def open_context(
    settings: WebSettings,
    bus: EventBus,
    *,
    owns_bus: bool,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[WebContext]:
    ctx = WebContext(
        settings=settings,
        apis=ServiceApis(settings, transport),
        bus=bus,
        feed=OrderFeed(bus),
        pages=Pages(settings),
        _bus_started=not owns_bus,  # a shared bus (the embedded mart's) is started by its owner
    )
    feed = asyncio.create_task(ctx.feed.run(), name="web-service:order-feed")
    ctx.started = True
    try:
        yield ctx
    finally:
        ctx.started = False
        await stop_gracefully([feed], grace_s=0)
        await ctx.apis.aclose()
        if owns_bus and ctx._bus_started:
            with contextlib.suppress(Exception):
                await bus.stop()


async def get_context(request: Request) -> WebContext:
    return request.app.state.web


WebContextDep = Annotated[WebContext, Depends(get_context)]
