"""``uvicorn notification_service.main:app --port 8010``"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus
from mart_common.service import create_service_app

from notification_service.bootstrap import definition
from notification_service.channels import Sender
from notification_service.domain import Channel
from notification_service.settings import NotificationSettings


def create_app(
    settings: NotificationSettings | None = None,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
    senders: Mapping[Channel, Sender] | None = None,
) -> FastAPI:
    """The notification service app; ``senders`` replaces the providers the settings choose (tests)."""
    settings = settings or NotificationSettings()
    return create_service_app(
        definition(settings, senders=senders), settings, bus=bus, token_verifier=token_verifier
    )


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
