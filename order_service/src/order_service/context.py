"""What order-service's use-cases need beyond the database and the bus: its settings (the payment window)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from mart_common.service import ServiceRuntime

from order_service.settings import OrderSettings


@dataclass(frozen=True)
class OrderContext:
    settings: OrderSettings


@asynccontextmanager
async def open_context(runtime: ServiceRuntime) -> AsyncIterator[OrderContext]:
    """The context while the service runs (nothing to close)."""
    yield OrderContext(settings=cast(OrderSettings, runtime.settings))


async def get_context(request: Request) -> OrderContext:
    return request.app.state.runtime.context


OrderContextDep = Annotated[OrderContext, Depends(get_context)]
