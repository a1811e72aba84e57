"""The composition root of order-service: routes, handlers, the context and the payment-window job."""

from __future__ import annotations

from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from order_service import services
from order_service.context import open_context
from order_service.handlers import HANDLERS
from order_service.routes import orders
from order_service.settings import OrderSettings


async def _cancel_unpaid_orders(runtime: ServiceRuntime) -> None:
    await services.cancel_unpaid_orders(runtime.db)


def definition(settings: OrderSettings) -> ServiceDefinition:
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — order service",
        description="Orders and the checkout saga: PENDING → AWAITING_PAYMENT → PAID → SHIPPED → DELIVERED.",
        routers=[orders.router],
        migrations_package="order_service.migrations",
        handlers=HANDLERS,
        context=open_context,
        periodic=[
            PeriodicJob("cancel-unpaid-orders", settings.payment_check_interval_s, _cancel_unpaid_orders)
        ],
        openapi_tags=[{"name": "orders", "description": "Place, follow, cancel, ship and deliver orders."}],
    )
