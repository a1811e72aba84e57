"""The composition root of order-service: routes, handlers and the payment-window check."""

from __future__ import annotations

import structlog
from mart_common.clock import utcnow
from mart_common.inbox import ignoring_context
from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime
from sqlalchemy import select

from order_service.checkout import advance, load_for_update
from order_service.domain import WAITING_FOR_PAYMENT, Trigger
from order_service.handlers import build_handlers
from order_service.models import Order
from order_service.routes import orders
from order_service.settings import OrderSettings

log = structlog.get_logger(__name__)


async def cancel_unpaid_orders(runtime: ServiceRuntime, limit: int = 200) -> int:
    """Cancel orders whose payment window has passed (one transaction each, re-checked under lock)."""
    now = utcnow()
    waiting = [s.value for s in WAITING_FOR_PAYMENT]
    async with runtime.db.session() as session:
        due = (
            await session.scalars(
                select(Order.id)
                .where(Order.status.in_(waiting), Order.payment_deadline < now)  # type: ignore[attr-defined,operator]
                .order_by(Order.payment_deadline)
                .limit(limit)
            )
        ).all()
    cancelled = 0
    for order_id in due:
        async with runtime.db.transaction() as session:
            order = await load_for_update(session, order_id)
            if order is None or order.status not in waiting:
                continue  # paid or cancelled meanwhile
            await advance(session, order, Trigger.PAYMENT_WINDOW_EXPIRED, "payment window expired")
            cancelled += 1
    if cancelled:
        log.info("unpaid_orders_cancelled", count=cancelled)
    return cancelled


def definition(settings: OrderSettings) -> ServiceDefinition:
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — order service",
        description="Orders and the checkout saga: PENDING → AWAITING_PAYMENT → PAID → SHIPPED → DELIVERED.",
        routers=[orders.router],
        migrations_package="order_service.migrations",
        handlers=ignoring_context(build_handlers(settings)),
        periodic=[
            PeriodicJob("cancel-unpaid-orders", settings.payment_check_interval_s, cancel_unpaid_orders)
        ],
        openapi_tags=[{"name": "orders", "description": "Place, follow, cancel, ship and deliver orders."}],
    )
