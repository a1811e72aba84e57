"""The event console (admin): what people looked at Kafka UI for, on Kafka and on the embedded bus —
an order's saga as a timeline, the live event stream, topics and consumer lag, dead letters with re-drive,
and the services' health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from mart_common.bus.browse import EventFilter, decode_event
from sse_starlette import EventSourceResponse

from web_service import console
from web_service.deps import AdminApi, Csrf, WebContextDep
from web_service.routes.orders import STREAM_TOKEN_MARGIN_S

router = APIRouter(prefix="/console", dependencies=[Csrf])


@router.get("", summary="Topics, consumer lag, dead letters, health.")
async def overview(request: Request, ctx: WebContextDep, api: AdminApi) -> Response:
    topics, bus_error = await console.overview(ctx.bus)
    return await ctx.pages.render(
        request,
        "console/overview.html",
        {
            "topics": topics,
            "bus_error": bus_error,
            "dead_letters": console.dead_letter_counts(topics),
            "probes": await console.health(ctx.apis.http, ctx.settings),
        },
    )


@router.get("/orders", summary="Find an order's timeline by its id.")
async def find_order(api: AdminApi, order_id: str = "") -> Response:
    return RedirectResponse(
        f"/console/orders/{order_id.strip()}" if order_id.strip() else "/console", status_code=303
    )


@router.get("/orders/{order_id}", summary="One order's saga: state changes, events, deliveries.")
async def order_timeline(request: Request, order_id: str, ctx: WebContextDep, api: AdminApi) -> Response:
    data = await console.timeline(api, ctx.bus, order_id)
    return await ctx.pages.render(request, "console/timeline.html", data)


@router.get("/events", summary="The live event stream, decoded.")
async def events_page(
    request: Request,
    ctx: WebContextDep,
    api: AdminApi,
    topic: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI's list query parameter
    type: str = "",
    key: str = "",
) -> Response:
    return await ctx.pages.render(
        request,
        "console/events.html",
        {
            "topics": console.SAGA_TOPICS + ("mart.users.v1", "mart.products.v1"),
            "chosen": topic,
            "type": type,
            "key": key,
        },
    )


@router.get("/events/stream", summary="Server-Sent Events: decoded records as they arrive (JSON).")
async def events_stream(
    ctx: WebContextDep,
    api: AdminApi,
    topic: Annotated[list[str], Query()] = [],  # noqa: B006
    type: str = "",
    key: str = "",
    from_beginning: bool = False,
) -> Response:
    where = EventFilter(types=tuple(t.strip() for t in type.split(",") if t.strip()), key=key.strip() or None)

    async def stream() -> AsyncIterator[dict[str, str]]:
        api.may_refresh = False
        topics = topic or console.DOMAIN_TOPICS
        async with ctx.bus.tail(topics, from_beginning=from_beginning, follow=True) as records:
            yield {"event": "ready", "data": "{}"}
            async for msg in records:
                event = decode_event(msg).as_dict()
                if where.matches(msg, event):
                    yield {"event": "record", "data": json.dumps(event)}
                if api.visitor.access_expires_in() < STREAM_TOKEN_MARGIN_S:
                    return  # the browser reconnects; that request checks the admin again

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})


@router.get("/dead-letters/{group}", summary="A consumer group's dead letters.")
async def group_dead_letters(request: Request, group: str, ctx: WebContextDep, api: AdminApi) -> Response:
    if group not in console.GROUPS:
        return await ctx.pages.render(request, "errors/not_found.html", status_code=404)
    letters = await console.dead_letters(await ctx.started_bus(), group)
    topics, _ = await console.overview(ctx.bus)
    counts = console.dead_letter_counts(topics)[group]
    return await ctx.pages.render(
        request, "console/dead_letters.html", {"group": group, "letters": letters, "counts": counts}
    )


@router.post("/dead-letters/{group}/redrive", summary="Re-publish the group's dead letters.")
async def redrive(group: str, ctx: WebContextDep, api: AdminApi) -> Response:
    if group not in console.GROUPS:
        api.visitor.flash("No such consumer group.", "error")
        return RedirectResponse("/console", status_code=303)
    count = await (await ctx.started_bus()).redrive(group)
    api.visitor.flash(
        f"Re-drove {count} dead letter{'s' if count != 1 else ''} of {group} onto their topics.", "success"
    )
    return RedirectResponse(f"/console/dead-letters/{group}", status_code=303)
