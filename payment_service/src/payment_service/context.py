"""What the payment service's use-cases need beyond the database and the bus: its settings, the payment
provider, and the loop that makes the provider calls after the commit (docs/conventions.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from mart_common.service import ServiceRuntime

from payment_service.provider_calls import ProviderCalls
from payment_service.providers import PaymentProvider, build_provider
from payment_service.settings import PaymentSettings


@dataclass
class PaymentContext:
    settings: PaymentSettings
    provider: PaymentProvider
    calls: ProviderCalls


@asynccontextmanager
async def open_context(
    runtime: ServiceRuntime, provider: PaymentProvider | None = None
) -> AsyncIterator[PaymentContext]:
    """The context of a starting service; ``provider`` replaces the one the settings choose (tests).

    The provider-call loop is built here and started by the service once its outbox relay has taken its
    place (bootstrap: nothing may write before); it is stopped here at the latest."""
    settings = runtime.settings
    if not isinstance(settings, PaymentSettings):
        raise TypeError(f"payment-service needs PaymentSettings, not {type(settings).__name__}")
    provider = provider or build_provider(settings)
    calls = ProviderCalls(runtime.db, provider, settings)
    try:
        yield PaymentContext(settings=settings, provider=provider, calls=calls)
    finally:
        await calls.stop()


async def get_context(request: Request) -> PaymentContext:
    return request.app.state.runtime.context


PaymentContextDep = Annotated[PaymentContext, Depends(get_context)]
