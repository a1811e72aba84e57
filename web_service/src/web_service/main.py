"""The web front's app: ``uvicorn web_service.main:app --port 8012`` (docs/web.md)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from mart_common.bus import EventBus

from web_service.bootstrap import build_app
from web_service.settings import WebSettings


def create_app(
    settings: WebSettings | None = None,
    *,
    bus: EventBus | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    return build_app(settings or WebSettings(), bus=bus, transport=transport)


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
