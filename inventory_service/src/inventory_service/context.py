"""What inventory's use-cases need beyond the database and the bus: its settings (the reservation TTL and
the low-stock threshold). Built at start (``ServiceDefinition.context``), reached as ``runtime.context``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from mart_common.service import ServiceRuntime

from inventory_service.settings import InventorySettings


@dataclass(frozen=True)
class InventoryContext:
    settings: InventorySettings

    @property
    def reservation_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.reservation_ttl_s)

    @property
    def low_stock_threshold(self) -> int:
        return self.settings.low_stock_threshold


@asynccontextmanager
async def open_context(runtime: ServiceRuntime) -> AsyncIterator[InventoryContext]:
    """Inventory's context for the life of the service (it opens nothing that needs closing)."""
    settings = runtime.settings
    if not isinstance(settings, InventorySettings):
        raise TypeError(f"inventory-service needs InventorySettings, not {type(settings).__name__}")
    yield InventoryContext(settings=settings)


async def get_context(request: Request) -> InventoryContext:
    return request.app.state.runtime.context


InventoryContextDep = Annotated[InventoryContext, Depends(get_context)]
