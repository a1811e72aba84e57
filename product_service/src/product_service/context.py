"""The product service's context: what its use-cases need beyond the database and the bus — the cache of
public catalog answers, kept until a write to the catalog commits in any replica
(docs/adr/0021-catalog-reads.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from mart_common.changes import ChangeFeed
from mart_common.responses import ResponseCache
from mart_common.service import ServiceRuntime

from product_service.models import Category, Product, Review
from product_service.settings import ProductSettings


@dataclass
class ProductContext:
    settings: ProductSettings
    catalog: ResponseCache  # public catalog answers, serialised once


@asynccontextmanager
async def open_context(runtime: ServiceRuntime) -> AsyncIterator[ProductContext]:
    """Start listening for catalog changes (every replica's commits) while the service runs."""
    feed = ChangeFeed(runtime.db, "mart_catalog", [Product.__table__, Category.__table__, Review.__table__])
    await feed.start()
    try:
        yield ProductContext(settings=cast("ProductSettings", runtime.settings), catalog=ResponseCache(feed))
    finally:
        await feed.stop()


async def get_context(request: Request) -> ProductContext:
    return request.app.state.runtime.context


ProductContextDep = Annotated[ProductContext, Depends(get_context)]
