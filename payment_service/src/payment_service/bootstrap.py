"""The composition root of the payment service: its context (provider, provider calls), handlers, routes."""

from __future__ import annotations

from functools import partial

from mart_common.service import ServiceDefinition, ServiceRuntime

from payment_service.context import open_context
from payment_service.handlers import HANDLERS
from payment_service.providers import FakeProvider, PaymentProvider, build_provider
from payment_service.routes import payments, webhook
from payment_service.settings import PaymentSettings


async def _start_provider_calls(runtime: ServiceRuntime) -> None:
    # Started once the outbox relay has taken its place: the loop writes (and records events) at once.
    runtime.context.calls.start()


async def _stop_provider_calls(runtime: ServiceRuntime) -> None:
    await runtime.context.calls.stop()


def definition(settings: PaymentSettings, provider: PaymentProvider | None = None) -> ServiceDefinition:
    """The payment service; ``provider`` replaces the one the settings choose (tests)."""
    provider = provider or build_provider(settings)
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
        handlers=HANDLERS,
        context=partial(open_context, provider=provider),
        on_startup=[_start_provider_calls],
        on_shutdown=[_stop_provider_calls],
        openapi_tags=[
            {"name": "payments", "description": "Payments of orders (owner or admin)."},
            {"name": "webhook", "description": "Stripe events, verified by signature."},
        ],
    )
