"""The notification service's context: its settings, the delivery providers, the dispatcher using them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from mart_common.service import ServiceRuntime

from notification_service.channels import Sender, build_senders
from notification_service.dispatcher import Dispatcher
from notification_service.domain import Channel
from notification_service.settings import NotificationSettings


@dataclass(frozen=True)
class NotificationContext:
    settings: NotificationSettings
    dispatcher: Dispatcher
    # The provider of each channel: the dispatcher's own mapping (replacing one here changes what it uses).
    senders: dict[Channel, Sender]


@asynccontextmanager
async def open_context(
    runtime: ServiceRuntime, *, senders: Mapping[Channel, Sender] | None = None
) -> AsyncIterator[NotificationContext]:
    """The providers the settings choose (``senders`` replaces some: tests) and a running dispatcher,
    stopped when the service stops."""
    settings = cast(NotificationSettings, runtime.settings)
    providers = {**build_senders(settings), **(senders or {})}
    dispatcher = Dispatcher.from_settings(runtime.db, providers, settings)
    dispatcher.start()
    try:
        yield NotificationContext(settings=settings, dispatcher=dispatcher, senders=dispatcher.senders)
    finally:
        await dispatcher.stop()


async def get_context(request: Request) -> NotificationContext:
    return request.app.state.runtime.context


NotificationContextDep = Annotated[NotificationContext, Depends(get_context)]
