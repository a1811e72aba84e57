"""The composition root of inventory-service: routes, handlers, its context and the reservation-expiry
sweep."""

from __future__ import annotations

from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from inventory_service import services
from inventory_service.context import open_context
from inventory_service.handlers import HANDLERS
from inventory_service.routes import stock
from inventory_service.settings import InventorySettings


async def _release_expired_reservations(runtime: ServiceRuntime) -> None:
    await services.release_expired_reservations(runtime.db, runtime.context)


def definition(settings: InventorySettings) -> ServiceDefinition:
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — inventory service",
        description="Stock per product, reservations for orders (all lines or none), admin adjustments.",
        routers=[stock.router],
        migrations_package="inventory_service.migrations",
        handlers=HANDLERS,
        context=open_context,
        # Reservations lock stock rows shared by every order of a product: one order per transaction keeps
        # the lock order (product id) that rules out deadlocks between partitions.
        batch_events=False,
        periodic=[
            PeriodicJob(
                "release-expired-reservations",
                settings.reservation_sweep_interval_s,
                _release_expired_reservations,
            )
        ],
        openapi_tags=[{"name": "stock", "description": "Stock levels, adjustments and their audit trail."}],
    )
