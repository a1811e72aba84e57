"""order-service: ``uvicorn order_service.main:app --port 8009``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from order_service.bootstrap import definition
from order_service.settings import OrderSettings


def create_app(
    settings: OrderSettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or OrderSettings()
    return create_service_app(definition(settings), settings, bus=bus, token_verifier=token_verifier)


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
