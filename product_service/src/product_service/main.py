"""The product service's FastAPI app: ``uvicorn product_service.main:app --port 8007``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from product_service.bootstrap import definition
from product_service.settings import ProductSettings


def create_app(
    settings: ProductSettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or ProductSettings()
    return create_service_app(definition(settings), settings, bus=bus, token_verifier=token_verifier)


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
