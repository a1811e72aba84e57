"""The composition root of inventory-service: routes, handlers and the reservation-expiry sweep."""

from __future__ import annotations

from datetime import UTC

import structlog
from mart_common.clock import utcnow
from mart_common.inbox import ignoring_context
from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from inventory_service import repository
from inventory_service.handlers import build_handlers
from inventory_service.routes import stock
from inventory_service.settings import InventorySettings

log = structlog.get_logger(__name__)


async def release_expired_reservations(runtime: ServiceRuntime) -> int:
    """Release reservations whose order was neither paid nor cancelled in time (one transaction each)."""
    settings: InventorySettings = runtime.settings  # type: ignore[assignment]
    now = utcnow()
    async with runtime.db.session() as session:
        order_ids = await repository.expired_reservations(session, now.astimezone(UTC))
    released = 0
    for order_id in order_ids:
        async with runtime.db.transaction() as session:
            if await repository.release(
                session, order_id, threshold=settings.low_stock_threshold, now=utcnow(), expired=True
            ):
                released += 1
    if released:
        log.info("reservations_expired", count=released)
    return released


def definition(settings: InventorySettings) -> ServiceDefinition:
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — inventory service",
        description="Stock per product, reservations for orders (all lines or none), admin adjustments.",
        routers=[stock.router],
        migrations_package="inventory_service.migrations",
        handlers=ignoring_context(build_handlers(settings)),
        # Reservations lock stock rows shared by every order of a product: one order per transaction keeps
        # the lock order (product id) that rules out deadlocks between partitions.
        batch_events=False,
        periodic=[
            PeriodicJob(
                "release-expired-reservations",
                settings.reservation_sweep_interval_s,
                release_expired_reservations,
            )
        ],
        openapi_tags=[{"name": "stock", "description": "Stock levels, adjustments and their audit trail."}],
    )
