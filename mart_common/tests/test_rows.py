"""Plain-row reads (mart_common.rows, ``Database.read_rows``): on PostgreSQL a statement compiled once runs on
the driver and answers what SQLAlchemy answers — the same columns, values and Python types — and a read the
driver cannot finish (a dropped connection, a refused value) leaves the pool usable and fails, if at all,
with SQLAlchemy's errors (docs/adr/0058-plain-row-reads-on-the-driver.md)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from mart_common.db import Database
from mart_common.deps import paged
from mart_common.problems import _database_unavailable
from mart_testkit.fixtures import database_unavailable
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    bindparam,
    cast,
    event,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

BOTH = pytest.mark.parametrize("backend", ["postgres", "sqlite"])


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("price", Numeric(10, 2), nullable=False),  # Decimal
    Column("rating", Numeric(3, 2, asdecimal=False)),  # float from a numeric column
    Column("weight", Float),
    Column("colour", Enum(Colour), nullable=False),
    Column("attrs", JSON),
)

ROWS = [
    {
        "id": uuid.UUID(int=i + 1),
        "name": f"thing {i}",
        "qty": i * 3,
        "active": i % 2 == 0,
        "created_at": datetime(2026, 1, 1 + i, 12, 0, tzinfo=UTC),
        "price": Decimal(f"{i}.25"),
        "rating": None if i == 2 else 1.5 + i,
        "weight": 0.5 * i,
        "colour": Colour.RED if i % 2 else Colour.BLUE,
        "attrs": {"tags": ["a", str(i)], "n": i},
    }
    for i in range(5)
]

BY_ID = select(things).where(things.c.id == bindparam("id"))
PAGE = paged(  # a page with its total as the last column, keyed "_total", as every list reads it
    select(things.c.id, things.c.name, things.c.price)
    .where(things.c.qty >= bindparam("min_qty"), things.c.active.is_(True))
    .order_by(things.c.created_at.desc())
)
LITERALS = select(things.c.name, (things.c.qty + 7).label("more")).where(things.c.colour == Colour.RED)
EXPANDING = (
    select(things.c.name).where(things.c.qty.in_(bindparam("qtys", expanding=True))).order_by(things.c.name)
)


async def _database(new_database, backend: str, pool_size: int = 10) -> Database:
    db = Database(await new_database(backend), pool_size=pool_size)
    await db.create_all([metadata])
    async with db.transaction() as session:
        await session.execute(things.insert(), ROWS)
    return db


def _typed(rows: list) -> list[tuple]:
    return [tuple((type(v), v) for v in row) for row in rows]


@BOTH
@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (BY_ID, {"id": uuid.UUID(int=3)}),
        (select(things).order_by(things.c.name), None),
        (PAGE, {"min_qty": 3, "_page_limit": 10, "_page_offset": 0}),
        (LITERALS, None),
        (EXPANDING, {"qtys": [0, 6, 12]}),
    ],
    ids=["by-id", "every-column", "page-with-total", "bound-literals", "expanding-in"],
)
async def test_a_read_answers_the_columns_values_and_types_sqlalchemy_answers(
    new_database, backend, statement, params
) -> None:
    db = await _database(new_database, backend)
    try:
        async with db.engine.connect() as connection:
            expected = (await connection.execute(statement, params)).all()
        through_sqlalchemy: list[str] = []
        event.listen(  # the engine read_rows reads through when the driver does not
            db._read_engine.sync_engine,  # noqa: SLF001
            "before_cursor_execute",
            lambda *a: a[2].startswith("SELECT") and through_sqlalchemy.append(a[2]),
        )
        for _ in range(2):  # compiled on the first read, reused on the second
            async with db.read_rows() as reader:
                rows = (await reader.execute(statement, params)).all()
            assert [row._fields for row in rows] == [tuple(row._fields) for row in expected]
            assert _typed(rows) == _typed(expected)
        assert rows, "every statement here matches rows"
        # On PostgreSQL the driver ran them, except a list rendered at execution (SQLAlchemy's to expand)
        driver = backend == "postgres" and statement is not EXPANDING
        assert len(through_sqlalchemy) == (0 if driver else 2)
    finally:
        await db.dispose()


@BOTH
async def test_one_row_by_attribute_and_a_scalar(new_database, backend) -> None:
    db = await _database(new_database, backend)
    try:
        async with db.read_rows() as reader:
            row = (await reader.execute(BY_ID, {"id": uuid.UUID(int=2)})).one_or_none()
            assert (row.name, row.colour, row.attrs) == ("thing 1", Colour.RED, {"tags": ["a", "1"], "n": 1})
            assert (await reader.execute(BY_ID, {"id": uuid.UUID(int=99)})).one_or_none() is None
            assert await reader.scalar(select(func.count()).select_from(things)) == 5
    finally:
        await db.dispose()


async def test_a_value_the_database_refuses_fails_with_sqlalchemys_error(new_database) -> None:
    db = await _database(new_database, "postgres", pool_size=1)
    try:
        refused = select(cast(bindparam("n", type_=String), Integer))
        async with db.read_rows() as reader:
            with pytest.raises(DBAPIError) as caught:
                await reader.execute(refused, {"n": "not a number"})
        assert caught.value.orig.sqlstate == "22P02"  # the problem handler answers 422 for class 22
        async with db.read_rows() as reader:  # the pool's one connection still serves
            assert await reader.scalar(select(literal(1))) == 1
    finally:
        await db.dispose()


async def test_a_connection_the_server_dropped_is_replaced_and_the_read_answers(new_database) -> None:
    db = await _database(new_database, "postgres", pool_size=1)
    other = Database(db.url, pool_size=1)
    try:
        async with db.read_rows() as reader:
            before = await reader.scalar(text("SELECT pg_backend_pid()"))
            await reader.execute(BY_ID, {"id": uuid.UUID(int=1)})  # compiled, run on the pooled connection
        async with other.transaction() as session:  # a restart, a failover, an idle timeout: the same
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        for _ in range(2):
            async with db.read_rows() as reader:
                row = (await reader.execute(BY_ID, {"id": uuid.UUID(int=1)})).one_or_none()
            assert row.name == "thing 0"
        async with db.read_rows() as reader:
            assert await reader.scalar(text("SELECT pg_backend_pid()")) != before
    finally:
        await other.dispose()
        await db.dispose()


async def test_statements_compiled_for_the_driver_are_kept_within_a_bound(new_database) -> None:
    db = await _database(new_database, "postgres")
    try:
        async with db.read_rows() as reader:
            for n in range(300):  # statements built per call (e.g. a count of a page past the end)
                assert await reader.scalar(select(literal(n) + things.c.qty).where(things.c.qty == 0)) == n
        assert len(db._plans) <= 256  # noqa: SLF001 - the bound is the property under test
    finally:
        await db.dispose()


async def test_while_the_database_is_away_a_read_fails_as_unavailable_and_answers_once_it_is_back(
    new_database,
) -> None:
    db = await _database(new_database, "postgres", pool_size=2)
    try:
        async with db.read_rows() as reader:  # compiled, and the pool holds a connection
            assert (await reader.execute(BY_ID, {"id": uuid.UUID(int=1)})).one_or_none().name == "thing 0"
        async with database_unavailable(db.url):
            async with db.read_rows() as reader:
                with pytest.raises(DBAPIError) as caught:
                    await reader.execute(BY_ID, {"id": uuid.UUID(int=1)})
            assert _database_unavailable(caught.value)  # the request answers 503 database-unavailable
        async with db.read_rows() as reader:
            assert (await reader.execute(BY_ID, {"id": uuid.UUID(int=1)})).one_or_none().name == "thing 0"
    finally:
        await db.dispose()
