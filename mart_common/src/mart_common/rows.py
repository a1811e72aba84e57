"""Plain-row reads on the driver: a Core ``select`` compiled once, then run on the pooled asyncpg connection
(docs/adr/0058-plain-row-reads-on-the-driver.md).

SQLAlchemy builds the statement (from the SQLModel tables) and compiles it once per statement object; each
execution then skips what a Core execution costs around the driver call — a ``Connection`` object, its
events, the cache key, the execution context and the result machinery. The types' own conversions still
apply (bind and result processors of the dialect), so the values are those a Core execution answers.

What it does not take — a statement with parameters rendered at execution (``IN`` with an expanding list,
literal-execute parameters), SQLite — runs through SQLAlchemy as before; so does a read the driver failed
(the pooled connection dropped first if it broke): reads change nothing, so running one again is safe, and
the error, if any, is then SQLAlchemy's, handled as every other database error (503 while the database is
away, 422 for a value PostgreSQL refuses).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from keyword import iskeyword
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

_CACHE_SIZE = 256  # statement objects: the hot reads are built once (module level, functools.cache)


class _Plan:
    """One statement, compiled for the driver: its SQL, its parameters in order with their conversions,
    and the row type with the columns' conversions."""

    __slots__ = ("compiled", "sql", "names", "binds", "dialect", "columns", "row", "results")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.compiled = compiled
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in _binds(compiled)
        }
        self.binds = tuple(binds.get(name) for name in self.names)
        self.dialect = dialect
        self.columns = compiled._result_columns  # noqa: SLF001 - the keys and types SQLAlchemy's rows carry
        # a textual statement declares no columns: its rows are keyed as the server names them (describe())
        self.row: Any = _row_type([c.keyname for c in self.columns]) if self.columns else None
        # the columns' conversions, known once the server has described them (describe())
        self.results: tuple[tuple[int, Any], ...] | None = None

    def describe(self, attributes: Sequence[Any]) -> None:
        """The columns' conversions, chosen (as SQLAlchemy chooses them) by each column's type and the
        server's type of the result column (``attributes``: the driver's description of the statement)."""
        if not self.columns:  # untyped (textual): nothing to convert, as SQLAlchemy converts nothing
            self.row = _row_type([attribute.name for attribute in attributes])
            self.results = ()
            return
        dialect = self.dialect
        self.results = tuple(
            (i, proc)
            for i, (c, attribute) in enumerate(zip(self.columns, attributes, strict=True))
            if (proc := c.type.dialect_impl(dialect).result_processor(dialect, attribute.type.oid))
            is not None
        )

    def args(self, params: dict[str, Any] | None) -> list[Any]:
        values = self.compiled.construct_params(params or {})
        return [
            value if proc is None else proc(value)
            for value, proc in zip((values[n] for n in self.names), self.binds, strict=True)
        ]

    def rows(self, records: Sequence[Any]) -> list[Any]:
        make = self.row
        if not self.results:  # described before the first rows arrive
            return [make(r) for r in records]
        out = []
        for r in records:
            values = list(r)
            for i, proc in self.results:
                values[i] = proc(values[i])
            out.append(make(values))
        return out


def _row_type(keys: list[str]) -> Any:
    """A tuple type with SQLAlchemy's row keys: ``_fields`` and attribute access by key (``_total`` too,
    which a named tuple refuses)."""
    attrs: dict[str, Any] = {"__slots__": (), "_fields": tuple(keys)}
    for i, key in enumerate(keys):
        if key.isidentifier() and not iskeyword(key):
            attrs.setdefault(key, property(itemgetter(i)))
    return type("Row", (tuple,), attrs)


def _binds(compiled: Any) -> list[tuple[str, Any]]:
    return [(compiled.bind_names[bind], bind) for bind in compiled.binds.values()]


def _plan(statement: Executable, dialect: Dialect) -> _Plan | None:
    """The driver's plan of ``statement``, or None when it must run through SQLAlchemy."""
    try:
        plan = _Plan(statement, dialect)
    except (TypeError, ValueError):  # nothing the driver could run as it is
        return None
    compiled = plan.compiled
    if compiled.positiontup is None or compiled.literal_execute_params or compiled.post_compile_params:
        return None  # parameters rendered at execution (expanding IN, literal_execute)
    return plan


class Rows:
    """What a read answered: rows with attribute access and ``_fields`` (as SQLAlchemy's rows)."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class RowReader:
    """Runs Core ``select`` statements for plain rows (no ORM session, nothing written): on PostgreSQL on the
    driver's connection, with SQLAlchemy's statement compiled once; elsewhere through SQLAlchemy."""

    def __init__(self, engine: AsyncEngine, plans: OrderedDict[Executable, _Plan | None]) -> None:
        self._engine = engine
        self._plans = plans
        self._raw: Any = None
        self._connection: AsyncConnection | None = None

    async def execute(self, statement: Executable, params: dict[str, Any] | None = None) -> Rows:
        plan = self._plan(statement)
        if plan is not None and self._connection is None:
            if self._raw is None:
                self._raw = await self._engine.raw_connection()
            driver = self._raw.driver_connection
            try:
                if plan.results is None:  # the first run: the statement prepared and described
                    prepared = await driver.prepare(plan.sql)
                    plan.describe(prepared.get_attributes())
                    records = await prepared.fetch(*plan.args(params))
                else:
                    records = await driver.fetch(plan.sql, *plan.args(params))
            except Exception:
                # Whatever the driver said, SQLAlchemy runs the read again and answers (a broken
                # connection is dropped first): its errors are the ones every handler knows.
                await self._release(broken=driver.is_closed())
            else:
                return Rows(plan.rows(records))
        return Rows(list((await (await self._sqlalchemy()).execute(statement, params)).all()))

    async def scalar(self, statement: Executable, params: dict[str, Any] | None = None) -> Any:
        return (await self.execute(statement, params)).scalar()

    async def scalars(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        return [row[0] for row in (await self.execute(statement, params)).all()]

    def _plan(self, statement: Executable) -> _Plan | None:
        plans = self._plans
        try:
            plan = plans[statement]
            plans.move_to_end(statement)
            return plan
        except KeyError:
            pass
        if self._engine.dialect.name != "postgresql" or self._engine.dialect.driver != "asyncpg":
            plan = None
        else:
            plan = _plan(statement, self._engine.dialect)
        plans[statement] = plan
        if len(plans) > _CACHE_SIZE:
            plans.popitem(last=False)
        return plan

    async def _sqlalchemy(self) -> AsyncConnection:
        if self._connection is None:
            await self._release(broken=False)
            self._connection = await self._engine.connect()
        return self._connection

    async def _release(self, *, broken: bool) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            # in SQLAlchemy's greenlet: returning a connection may talk to the driver (reset, close)
            await greenlet_spawn(raw.invalidate if broken else raw.close)

    async def close(self) -> None:
        await self._release(broken=False)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


@asynccontextmanager
async def reading(
    engine: AsyncEngine, plans: OrderedDict[Executable, _Plan | None]
) -> AsyncIterator[RowReader]:
    reader = RowReader(engine, plans)
    try:
        yield reader
    finally:
        await reader.close()
