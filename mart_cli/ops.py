"""Everyday operations: order timeline, dead letters, migrations (thin: they call the services' APIs,
the bus and the migrations; no domain logic here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from mart_common.bus import EventBus, create_bus
from mart_common.messaging import BusMessage
from mart_common.settings import ServiceSettings

from mart_cli.client import bearer, check, login
from mart_cli.credentials import load_or_create
from mart_cli.dist import DistConfig
from mart_cli.services import SERVICES, Endpoints, service


async def order_timeline(ep: Endpoints, data_dir: Path, order_id: str) -> dict[str, Any]:
    """The order (with its history) and its payments, fetched as the admin."""
    creds = load_or_create(data_dir)
    async with httpx.AsyncClient(timeout=30) as client:
        headers = bearer(await login(client, ep, creds.admin.email, creds.admin.password))
        order = check(await client.get(ep.order(f"/orders/{order_id}"), headers=headers)).json()
        payments = check(
            await client.get(ep.payment(f"/payments?order_id={order_id}"), headers=headers)
        ).json()
    return {"order": order, "payments": payments.get("items", payments)}


def format_timeline(data: dict[str, Any]) -> str:
    order = data["order"]
    lines = [
        f"order {order['id']}  status {order['status']}  "
        f"total {order.get('total_cents')} {order.get('currency', '')}",
        "history:",
    ]
    for step in order.get("history", []):
        reason = f"  ({step['reason']})" if step.get("reason") else ""
        lines.append(f"  {step.get('at', ''):<34} {step['status']}{reason}")
    lines.append("payments:" if data["payments"] else "payments: none yet")
    for p in data["payments"]:
        lines.append(
            f"  {p['id']}  {p['status']:<16} {p.get('amount_cents')} {p.get('currency', '')}  "
            f"provider {p.get('provider')}"
        )
    return "\n".join(lines)


def build_bus(kind: str, data_dir: Path, dist: DistConfig | None) -> EventBus:
    """The bus of the running mode (mart_common.bus.create_bus): Kafka (distributed) or the embedded
    in-process log, which must exist already (the CLI reads it, it never starts a fresh one)."""
    path = data_dir / "bus.sqlite"
    if kind != "kafka" and not path.exists():
        raise FileNotFoundError(
            f"no in-process bus log at {path} (has the embedded mart run with this data dir?)"
        )
    settings = ServiceSettings(
        service_name="mart-cli",
        data_dir=data_dir,
        event_bus="kafka" if kind == "kafka" else "inprocess",
        kafka_bootstrap_servers=dist.kafka_bootstrap if dist else "127.0.0.1:9092",
        kafka_namespace=dist.kafka_namespace if dist else "",
        inprocess_bus_url=f"sqlite+aiosqlite:///{path}",
    )
    return create_bus(settings)


def group_name(group: str) -> str:
    try:
        return service(group).name
    except KeyError:
        return group


async def dead_letters(bus: EventBus, group: str) -> list[BusMessage]:
    await bus.start()
    try:
        return await bus.dead_letters(group_name(group))
    finally:
        await bus.stop()


async def redrive(bus: EventBus, group: str) -> int:
    await bus.start()
    try:
        return await bus.redrive(group_name(group))
    finally:
        await bus.stop()


def format_dead_letter(msg: BusMessage) -> str:
    def h(name: str) -> str:
        return msg.header(name) or ""

    return (
        f"{h('dlq_at')}  {h('ce_type')}  key={msg.key}  from {h('dlq_original_topic')}"
        f"[{h('dlq_original_partition')}]@{h('dlq_original_offset')}  attempts={h('dlq_attempts')}\n"
        f"    reason: {h('dlq_reason')}"
    )


async def migrate(urls: dict[str, str], say: Callable[[str], None] = print) -> None:
    from mart_common.db import Database

    for svc in SERVICES:
        db = Database(urls[svc.package])
        try:
            await db.migrate(svc.migrations_package)
        finally:
            await db.dispose()
        say(f"  {svc.name:<22} migrated ({urls[svc.package].split('://', 1)[0]})")
