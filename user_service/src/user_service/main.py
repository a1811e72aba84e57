"""The user service's FastAPI app: ``uvicorn user_service.main:app --port 8006``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from user_service.bootstrap import definition
from user_service.keys import KeyStore, load_or_create_keys
from user_service.settings import UserSettings

__all__ = ["create_app", "load_or_create_keys"]


def create_app(
    settings: UserSettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
    keys: KeyStore | None = None,
) -> FastAPI:
    """Build the app. By default it signs with the keys from settings / the key file and verifies its
    own access tokens with them in-process (no HTTP round trip to itself)."""
    settings = settings or UserSettings()
    keys = keys or load_or_create_keys(settings)
    return create_service_app(
        definition(settings, keys=keys),
        settings,
        bus=bus,
        token_verifier=token_verifier or keys.verifier(settings.jwt_issuer),
    )


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
