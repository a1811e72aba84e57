"""What the event console shows, read from the bus (the same reader as ``mart events``) and the services'
public APIs: one order's saga as a timeline, dead letters, topics with their consumer groups' lag, and
each service's (and replica's) health."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from mart_common.bus import EventBus
from mart_common.bus.base import DLQ_PREFIX, dead_letter_topic
from mart_common.bus.browse import DecodedEvent, EventFilter, TopicInfo, decode_event

from web_service.clients import Api, ServiceDown
from web_service.settings import WebSettings

#: The topics an order's saga passes through (docs/saga.md).
SAGA_TOPICS = ("mart.orders.v1", "mart.stock.v1", "mart.payments.v1")
#: Every topic the services publish on (docs/events.md); the live stream follows these unless told otherwise.
DOMAIN_TOPICS = ("mart.users.v1", "mart.products.v1", *SAGA_TOPICS)
#: The consumer groups (one per service that consumes; docs/events.md).
GROUPS = (
    "inventory-service",
    "order-service",
    "payment-service",
    "notification-service",
    "user-service",
    "product-service",
)
SERVICES = (
    "user-service",
    "product-service",
    "inventory-service",
    "order-service",
    "payment-service",
    "notification-service",
)


@dataclass
class Step:
    """One line of an order's timeline."""

    at: str
    kind: str  # "state" | "event" | "delivery"
    title: str
    detail: dict[str, Any] = field(default_factory=dict)


def _moment(at: str) -> datetime:
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def trace_id(event: DecodedEvent) -> str | None:
    parts = (event.headers.get("traceparent") or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


async def order_events(bus: EventBus, order_id: str) -> list[DecodedEvent]:
    """Every event of the order on the saga's topics, read from the start (no consumer group)."""
    where = EventFilter(order=order_id)
    found: list[DecodedEvent] = []
    async with bus.tail(SAGA_TOPICS, from_beginning=True, follow=False) as records:
        async for msg in records:
            event = decode_event(msg)
            if where.matches(msg, event.as_dict()):
                found.append(event)
    return found


async def timeline(api: Api, bus: EventBus, order_id: str) -> dict[str, Any]:
    """The order (through the order API), its events (from the bus) and its notifications' deliveries
    (through the notification API), as one list ordered by time."""
    order = await api.orders.get(order_id)
    steps = [
        Step(h["at"], "state", h["status"], {"reason": h.get("reason") or ""})
        for h in order.get("history", [])
    ]
    bus_error = None
    try:
        events = await order_events(bus, order_id)
    except Exception as exc:  # noqa: BLE001 - the broker being away must not hide the rest of the timeline
        events, bus_error = [], f"The event bus cannot be read right now ({type(exc).__name__})."
    for e in events:
        steps.append(
            Step(
                e.headers.get("ce_time", ""),
                "event",
                (e.type or "?").rsplit(".", 1)[-1],
                {
                    "topic": e.topic,
                    "partition": e.partition,
                    "offset": e.offset,
                    "key": e.key,
                    "type": e.type,
                    "source": e.headers.get("ce_source", ""),
                    "id": e.headers.get("ce_id", ""),
                    "payload": e.payload,
                    "error": e.error,
                },
            )
        )
    delivery_error = None
    event_ids = {e.headers.get("ce_id") for e in events}
    try:
        deliveries = (await api.notifications.deliveries(user_id=order["user_id"], limit=100))["items"]
    except ServiceDown as exc:
        deliveries, delivery_error = [], f"Deliveries cannot be shown right now ({exc.words} unavailable)."
    for d in deliveries:
        if d.get("event_id") in event_ids:
            steps.append(Step(d.get("sent_at") or d.get("created_at") or "", "delivery", d["channel"], d))
    steps.sort(key=lambda s: (_moment(s.at), {"event": 0, "state": 1, "delivery": 2}[s.kind]))
    traces = [t for t in (trace_id(e) for e in events) if t]
    return {
        "order": order,
        "steps": steps,
        "trace_id": traces[0] if traces else None,
        "bus_error": bus_error,
        "delivery_error": delivery_error,
    }


@dataclass
class DeadLetter:
    event: DecodedEvent
    reason: str
    at: str
    attempts: str
    origin: str


async def dead_letters(bus: EventBus, group: str) -> list[DeadLetter]:
    out = []
    for msg in await bus.dead_letters(group):
        h = {k: v.decode("utf-8", "replace") for k, v in msg.headers}
        origin = (
            f"{h.get(DLQ_PREFIX + 'original_topic', '?')}[{h.get(DLQ_PREFIX + 'original_partition', '?')}]"
        )
        origin += f"@{h.get(DLQ_PREFIX + 'original_offset', '?')}"
        out.append(
            DeadLetter(
                event=decode_event(msg),
                reason=h.get(DLQ_PREFIX + "reason", ""),
                at=h.get(DLQ_PREFIX + "at", ""),
                attempts=h.get(DLQ_PREFIX + "attempts", ""),
                origin=origin,
            )
        )
    return out


def dead_letter_counts(topics: list[TopicInfo]) -> dict[str, dict[str, int]]:
    """Per consumer group: its dead letters, and how many of them are not re-driven yet."""
    out = {g: {"total": 0, "waiting": 0} for g in GROUPS}
    for info in topics:
        for group in GROUPS:
            if info.topic == dead_letter_topic(group):
                drained = next((g for g in info.groups if g.group == f"{group}.redrive"), None)
                waiting = drained.lag if drained else info.messages
                out[group] = {"total": info.messages, "waiting": waiting}
    return out


@dataclass
class Probe:
    service: str
    target: str
    alive: bool
    ready: bool
    detail: str


async def health(http: httpx.AsyncClient, settings: WebSettings) -> list[Probe]:
    """``/health`` and ``/ready`` of every service: of each replica when their addresses are configured
    (``MART_HEALTH_TARGETS``), else once per service through the gateway."""

    async def probe(service: str, base: str) -> Probe:
        alive = ready = False
        detail = ""
        try:
            alive = (await http.get(f"{base}/health", timeout=3)).status_code == 200
            answer = await http.get(f"{base}/ready", timeout=3)
            ready = answer.status_code == 200
            if not ready:
                body = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
                parts = [f"{k} {v}" for k, v in body.items() if k in ("database", "broker") and v != "ok"]
                detail = ", ".join(parts) or f"HTTP {answer.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            detail = f"unreachable ({type(exc).__name__})"
        return Probe(service, base, alive, ready, detail)

    jobs = []
    for service in SERVICES:
        targets = settings.health_targets.get(service) or [settings.api_base(service)]
        jobs += [probe(service, t.rstrip("/")) for t in targets]
    return list(await asyncio.gather(*jobs))


async def overview(bus: EventBus) -> tuple[list[TopicInfo], str | None]:
    try:
        return await bus.topics_overview(), None
    except Exception as exc:  # noqa: BLE001 - shown on the page: the broker is away
        return [], f"The event bus cannot be read right now ({type(exc).__name__}: {exc})."
