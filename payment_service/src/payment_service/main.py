"""``uvicorn payment_service.main:app --port 8011``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from payment_service.bootstrap import definition
from payment_service.providers import PaymentProvider
from payment_service.settings import PaymentSettings


def create_app(
    settings: PaymentSettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
    provider: PaymentProvider | None = None,
) -> FastAPI:
    """The payment service; ``provider`` replaces the one the settings choose (tests)."""
    settings = settings or PaymentSettings()
    return create_service_app(
        definition(settings, provider), settings, bus=bus, token_verifier=token_verifier
    )


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
