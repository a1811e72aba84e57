"""inventory-service: ``uvicorn inventory_service.main:app --port 8008``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from inventory_service.bootstrap import definition
from inventory_service.settings import InventorySettings


def create_app(
    settings: InventorySettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or InventorySettings()
    return create_service_app(definition(settings), settings, bus=bus, token_verifier=token_verifier)


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
