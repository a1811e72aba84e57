"""``Annotated`` dependencies so route signatures read like sentences."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import ColumnElement, FromClause, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from mart_common.auth import AdminUser, CurrentUser, Principal
from mart_common.rows import RowReader
from mart_common.service import ServiceRuntime

# Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency (a class too) in the thread
# pool, a thread hop per request for a line of code.


def runtime_of(request: Request) -> ServiceRuntime:
    """The running service a request reached. Routes take ``RuntimeDep``; the hottest reads (the public
    catalog) call this instead and take no dependency at all."""
    return request.app.state.runtime


async def get_runtime(request: Request) -> ServiceRuntime:
    return runtime_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session. Reads (GET, HEAD) get :meth:`Database.read` (no BEGIN/COMMIT round trips on
    PostgreSQL, no write lock on SQLite); routes that write call ``await session.commit()``."""
    db = request.app.state.runtime.db
    if request.method in ("GET", "HEAD"):
        async with db.read() as session:
            yield session
    else:
        async with db.session() as session:
            yield session


async def get_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction for a route that writes: committed when the route function
    returns (before the response is sent: ``scope="function"``), rolled back when it raises. Routes never
    commit; the use-case they call (``services.py``) works inside it (docs/conventions.md)."""
    async with request.app.state.runtime.db.transaction() as session:
        yield session


T = TypeVar("T")


class Paginated(BaseModel, Generic[T]):
    """A page of a list: ``{items, total, limit, offset, total_exact}``. ``total_exact`` is false when
    ``total`` counts only the part of the matches the list considered (a text search's window): more
    matched."""

    items: list[T]
    total: int
    limit: int
    offset: int
    total_exact: bool = True


class Page:
    """A page of a list: ``limit`` rows from ``offset`` (the query parameters of :data:`PageDep`)."""

    def __init__(self, limit: int = 20, offset: int = 0) -> None:
        self.limit = limit
        self.offset = offset

    def wrap(self, items: list[Any], total: int, *, total_exact: bool = True) -> dict[str, Any]:
        """The page's answer (:class:`Paginated`); ``total_exact``: false when more than ``total`` matched."""
        return {
            "items": items,
            "total": total,
            "limit": self.limit,
            "offset": self.offset,
            "total_exact": total_exact,
        }

    async def rows(
        self,
        session: AsyncSession | RowReader,
        query: Select[Any],
        params: dict[str, Any] | None = None,
        *,
        entities: bool = False,
        total: Any = None,
    ) -> tuple[list[Any], int]:
        """This page of ``query`` (an ordered select) and how many rows its filters match in all.

        One statement: the count rides on every row as a window over the filters; only a page past the
        end (no rows) counts on its own. ``session``: an ORM session, or a row reader
        (:meth:`~mart_common.db.Database.read_rows`) for plain rows. ``entities``: ``query`` selects one
        ORM entity; return those objects instead of rows. ``query`` may come from :func:`paged` (built
        once, cached by SQLAlchemy), with ``params`` for its other bound parameters. ``total``: as in
        :func:`paged`.
        """
        if query._limit_clause is None:  # noqa: SLF001 - not built by paged(): page it here
            query = paged(query, total)
        params = params or {}
        rows = (
            await session.execute(query, {**params, "_page_limit": self.limit, "_page_offset": self.offset})
        ).all()
        if rows:
            total = int(rows[0][-1])
            return ([row[0] for row in rows] if entities else list(rows)), total
        kept = query.get_execution_options().get(_KEPT_TOTAL)
        if kept is not None:  # a page past the end of a list with a kept count: the count
            return [], int(await session.scalar(kept, params) or 0)
        counted = query.limit(None).offset(None).order_by(None)
        total = await session.scalar(select(func.count()).select_from(counted.subquery()), params)
        return [], int(total or 0)

    async def of(
        self,
        session: AsyncSession,
        query: Select[Any],
        convert: Callable[[Any], Any] = lambda row: row,
        *,
        total: Any = None,
    ) -> dict[str, Any]:
        """This page of ``query`` (an ordered select of entities) as ``{items, total, limit, offset}``;
        ``total`` counts every row the query's filters match (``total``: as in :func:`paged`)."""
        rows, total = await self.rows(session, query, entities=True, total=total)
        return self.wrap([convert(row) for row in rows], total)


def paged(query: Select[Any], total: Any = None) -> Select[Any]:
    """``query`` (ordered) with the total as its last column (``_total``) and the page's ``limit`` and
    ``offset`` as bound parameters: build it once per query shape and run it with :meth:`Page.rows`.

    The total is a window over the filters (it reads every matching row), or ``total``: a scalar subquery
    that gives the same number without reading them (a count kept by the writes), for lists whose
    matches grow with the data."""
    counted = func.count().over() if total is None else total.scalar_subquery()
    query = (
        query.add_columns(counted.label("_total"))
        .limit(bindparam("_page_limit"))
        .offset(bindparam("_page_offset"))
    )
    return query if total is None else query.execution_options(**{_KEPT_TOTAL: total})


def paged_then_read(
    candidates: FromClause,
    order: Sequence[ColumnElement[Any]],
    table: FromClause,
    columns: Sequence[ColumnElement[Any]],
    total: Select[Any],
) -> Select[Any]:
    """Like :func:`paged` for a page chosen among many candidate rows: ``candidates`` (a subquery with the
    rows' ``id`` and the columns ``order`` sorts by) is sorted and paged first, and only the page's rows of
    ``table`` are read whole (``columns``), in the same order. The candidates carry their sort keys only,
    not every column of every candidate. ``total``: the count, as in :func:`paged`. Run it with
    :meth:`Page.rows`."""
    # (expression, descending) of each sort key; a bare expression sorts ascending.
    sorts = [
        (o.element, o.modifier is operators.desc_op) if isinstance(o, UnaryExpression) else (o, False)
        for o in order
    ]
    keys = [expression.label(f"_key{i}") for i, (expression, _) in enumerate(sorts)]
    page = (
        select(candidates.c.id.label("_id"), *keys)
        .select_from(candidates)
        .order_by(*order)
        .limit(bindparam("_page_limit"))
        .offset(bindparam("_page_offset"))
        .subquery("page")
    )
    in_order = [
        page.c[f"_key{i}"].desc() if desc else page.c[f"_key{i}"].asc() for i, (_, desc) in enumerate(sorts)
    ]
    query = (
        select(*columns, total.scalar_subquery().label("_total"))
        .select_from(page.join(table, table.c.id == page.c._id))
        .order_by(*in_order)
        .limit(bindparam("_page_limit"))  # the page's rows already; marks the query as paged
    )
    return query.execution_options(**{_KEPT_TOTAL: total})


_KEPT_TOTAL = "mart_kept_total"  # paged()'s ``total``, for a page past the end (no row carries it)


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (max 100).")] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
) -> Page:
    """``limit`` (1..100, default 20) and ``offset`` query parameters."""
    return Page(limit, offset)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
TransactionDep = Annotated[AsyncSession, Depends(get_transaction, scope="function")]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
PageDep = Annotated[Page, Depends(page_params)]

__all__ = [
    "AdminUser",
    "CurrentUser",
    "PageDep",
    "Paginated",
    "Principal",
    "RuntimeDep",
    "SessionDep",
    "TransactionDep",
    "runtime_of",
]
