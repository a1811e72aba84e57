"""The composition root of the payment service: provider, handlers, routes."""

from __future__ import annotations

from mart_common.inbox import ignoring_context
from mart_common.service import ServiceDefinition, ServiceRuntime

from payment_service.handlers import build_handlers
from payment_service.provider_calls import ProviderCalls
from payment_service.providers import FakeProvider, PaymentProvider
from payment_service.routes import payments, webhook
from payment_service.settings import PaymentSettings


def definition(settings: PaymentSettings, provider: PaymentProvider) -> ServiceDefinition:
    async def expose_provider(runtime: ServiceRuntime) -> None:
        runtime.extras["payment_provider"] = provider

    async def start_provider_calls(runtime: ServiceRuntime) -> None:
        calls = ProviderCalls(runtime.db, runtime.extras.get("payment_provider", provider), settings)
        runtime.extras["provider_calls"] = calls
        calls.start()

    async def stop_provider_calls(runtime: ServiceRuntime) -> None:
        calls = runtime.extras.pop("provider_calls", None)
        if calls is not None:
            await calls.stop()

    routers = [payments.router, webhook.router]
    if isinstance(provider, FakeProvider):
        routers.append(payments.simulate_router)  # with Stripe the route does not exist (404)
    return ServiceDefinition(
        name=settings.service_name,
        title="Payment service",
        description=(
            "Payments of orders through Stripe (or the built-in fake provider). On OrderAwaitingPayment it "
            "creates the payment with the provider (CREATING, retried with backoff; a refusal or retries "
            "exhausted fail it: PaymentFailed) and publishes PaymentRequested; the Stripe webhook "
            "publishes PaymentSucceeded / PaymentFailed; a cancelled paid order is refunded "
            "(PaymentRefunded)."
        ),
        routers=routers,
        migrations_package="payment_service.migrations",
        handlers=ignoring_context(build_handlers(provider)),
        on_startup=[expose_provider, start_provider_calls],
        on_shutdown=[stop_provider_calls],
        openapi_tags=[
            {"name": "payments", "description": "Payments of orders (owner or admin)."},
            {"name": "webhook", "description": "Stripe events, verified by signature."},
        ],
    )
