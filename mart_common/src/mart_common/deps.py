"""``Annotated`` dependencies so route signatures read like sentences."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common.auth import AdminUser, CurrentUser, Principal
from mart_common.service import ServiceRuntime


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for the request; routes that write call ``await session.commit()``."""
    async with request.app.state.runtime.db.session() as session:
        yield session


T = TypeVar("T")


class Paginated(BaseModel, Generic[T]):
    """A page of a list: ``{items, total, limit, offset}``."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Page:
    """``limit`` (1..100, default 20) and ``offset`` query parameters."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size (max 100).")] = 20,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset

    def wrap(self, items: list[Any], total: int) -> dict[str, Any]:
        return {"items": items, "total": total, "limit": self.limit, "offset": self.offset}

    async def of(
        self, session: AsyncSession, query: Select[Any], convert: Callable[[Any], Any] = lambda row: row
    ) -> dict[str, Any]:
        """This page of ``query`` (an ordered select of entities) as ``{items, total, limit, offset}``;
        ``total`` counts every row the query's filters match."""
        total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
        rows = (await session.scalars(query.limit(self.limit).offset(self.offset))).all()
        return self.wrap([convert(row) for row in rows], int(total or 0))


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
PageDep = Annotated[Page, Depends()]

__all__ = ["AdminUser", "CurrentUser", "PageDep", "Paginated", "Principal", "RuntimeDep", "SessionDep"]
