"""Each service's migrations produce exactly the schema its models declare, on SQLite and PostgreSQL,
and can be undone (downgrade to base) and redone."""

from __future__ import annotations

import importlib
import itertools
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from mart_common.db import Database
from mart_common.messaging import MESSAGING_METADATA
from mart_common.migrations import UNMAPPED, include_object
from mart_testkit.fixtures import create_postgres_database, drop_postgres_database
from sqlalchemy import Column, Integer, MetaData

SERVICES = [
    "user_service",
    "product_service",
    "inventory_service",
    "order_service",
    "payment_service",
    "notification_service",
]


def _diff(sync_conn, metadata):
    targets = [metadata, MESSAGING_METADATA]
    ctx = MigrationContext.configure(
        sync_conn, opts={"compare_type": True, "include_object": include_object(targets)}
    )
    return [
        d for d in compare_metadata(ctx, targets) if d[0] != "remove_table" or d[1].name != "alembic_version"
    ]


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_models_and_round_trip(service: str, database_url: str) -> None:
    metadata = importlib.import_module(f"{service}.models").METADATA
    db = Database(database_url)
    try:
        await db.migrate(f"{service}.migrations")
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(_diff, metadata)
        assert diff == [], f"{service}: migrations and models differ: {diff}"

        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files(f"{service}.migrations")))

        def _down(sync_conn):
            cfg.attributes["connection"] = sync_conn
            command.downgrade(cfg, "base")

        async with db.engine.begin() as conn:
            await conn.run_sync(_down)
            tables = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert set(tables) <= {"alembic_version"}
        await db.migrate(f"{service}.migrations")  # and up again
    finally:
        await db.dispose()


# --- migrations on data ---------------------------------------------------------------------------
#
# A populated database per service: rows in every table, made from the table definitions (the models at
# head, or the tables reflected from a database at an older revision), so a new table or column is covered
# without touching this file. Then:
# - round trip: every revision step above the initial one is downgraded and upgraded again with the data
#   in place (what the older schema holds must come back unchanged); downgrading the initial revision drops
#   the tables (there is no older schema to keep data in), after which head is rebuilt and written to again;
# - migrate from the previous revision with data: for every revision with a predecessor, a database at the
#   predecessor is populated, upgraded to that revision and then to head, and every value survives.
# Today each service has one revision (0001), so the second test covers the base -> 0001 step only; the
# revision 0002 a service gains is covered by it without any change here.

ROWS_PER_TABLE = 2
_INTS = itertools.count(1_000_000, -1)
_ROWS = itertools.count()
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _alembic(service: str) -> tuple[Config, ScriptDirectory]:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(f"{service}.migrations")))
    return cfg, ScriptDirectory.from_config(cfg)


def _chain(service: str) -> list[tuple[str | None, str]]:
    """(down_revision, revision) from the initial revision to head (linear history)."""
    _cfg, script = _alembic(service)
    revisions = list(script.walk_revisions("base", "heads"))
    assert len(script.get_heads()) == 1, f"{service}: several migration heads"
    return [(r.down_revision, r.revision) for r in reversed(revisions)]  # type: ignore[misc]


async def _to(db: Database, service: str, revision: str, *, down: bool = False) -> None:
    cfg, _script = _alembic(service)

    def _run(sync_conn: Any) -> None:
        cfg.attributes["connection"] = sync_conn
        (command.downgrade if down else command.upgrade)(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_run)


def _value(column: Column, table: str, n: int) -> Any:
    """A value for ``column`` in row ``n``; distinct per row where it could be unique."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = str
    length = getattr(column.type, "length", None)
    if kind is uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{table}/{column.name}/{n}")
    if kind is bool:
        return n % 2 == 0
    if kind is int:  # distinct, positive and decreasing (a later column never exceeds an earlier one)
        return next(_INTS)
    if kind is float or kind is Decimal:
        return kind("1.5")
    if kind is datetime:
        return WHEN if getattr(column.type, "timezone", False) else WHEN.replace(tzinfo=None)
    if kind is date:
        return WHEN.date()
    if kind is bytes:
        return n.to_bytes(4, "big") + b"\x00\xff"
    if kind in (dict, list):
        return {"row": n, "text": "é ✓ 日本"}
    if length == 32 and column.name.endswith("id"):  # a UUID kept as CHAR(32) (SQLite)
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{table}/{column.name}/{n}").hex
    text_value = f"{column.name}-{n}-é✓"
    return text_value[:length] if length else text_value


def _rows(metadata: MetaData) -> dict[str, list[dict[str, Any]]]:
    """Rows for every table of ``metadata`` (parents first), foreign keys pointing at the parent rows."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        rows[table.name] = []
        for n in range(ROWS_PER_TABLE):
            serial = next(_ROWS)  # unique across populations of one database
            row = {}
            for column in table.columns:
                if column.primary_key and column.autoincrement is True and isinstance(column.type, Integer):
                    continue
                if column.computed is not None:  # a generated column: the database computes it
                    continue
                if column.foreign_keys:
                    fk = next(iter(column.foreign_keys))
                    row[column.name] = rows[fk.column.table.name][n][fk.column.name]
                else:
                    row[column.name] = _value(column, table.name, serial)
            rows[table.name].append(row)
    return rows


async def _populate(
    db: Database, metadata: MetaData | None, service: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Insert rows into every table (of ``metadata``, else of the database as it is now, but for the
    tables ``service``'s migrations make without a model: an index's own tables); returns them."""
    async with db.engine.begin() as conn:
        if metadata is None:
            metadata = MetaData()
            await conn.run_sync(metadata.reflect)
            models = importlib.import_module(f"{service}.models") if service else None
            for name in models.METADATA.info.get(UNMAPPED, ()) if models else ():
                if name in metadata.tables:
                    metadata.remove(metadata.tables[name])
        rows = _rows(metadata)
        for table in metadata.sorted_tables:
            if rows.get(table.name):
                await conn.execute(table.insert(), rows[table.name])
    return rows


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        return expected.replace(tzinfo=None) == actual.replace(tzinfo=None) and (
            expected.tzinfo is None or actual.tzinfo is None or expected == actual
        )
    if isinstance(expected, uuid.UUID) or isinstance(actual, uuid.UUID):
        return str(expected).replace("-", "") == str(actual).replace("-", "")
    return expected == actual


async def _schema(db: Database) -> dict[str, set[str]]:
    """Table -> column names of the database as it is now."""
    async with db.engine.connect() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
    return {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}


async def _missing(
    db: Database, rows: dict[str, list[dict[str, Any]]], within: dict[str, set[str]] | None = None
) -> list[str]:
    """Rows (by the columns the database still has) that are not in the database as written.

    ``within``: only the tables and columns of that (older) schema count: what a revision adds is not
    there to keep when the database goes below it.
    """
    problems = []
    async with db.engine.connect() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        for name, written in rows.items():
            if within is not None and name not in within:
                continue
            if name not in metadata.tables:
                problems.append(f"table {name} is gone")
                continue
            table = metadata.tables[name]
            found = [dict(r._mapping) for r in (await conn.execute(table.select())).all()]
            for row in written:
                kept = {
                    k: v
                    for k, v in row.items()
                    if k in table.columns and (within is None or k in within[name])
                }
                if not any(all(_same(v, f.get(k)) for k, v in kept.items()) for f in found):
                    problems.append(f"{name}: row {kept} not found in {found}")
    return problems


@pytest.mark.parametrize("service", SERVICES)
async def test_round_trip_with_data(service: str, database_url: str) -> None:
    metadata = importlib.import_module(f"{service}.models").METADATA
    chain = _chain(service)
    db = Database(database_url)
    try:
        await db.migrate(f"{service}.migrations")
        written = await _populate(db, _with_messaging(metadata))
        assert set(written) >= {t.name for t in metadata.sorted_tables}
        assert await _missing(db, written) == []  # the check sees what was written
        for down_revision, _revision in reversed(chain):
            if down_revision is None:
                break
            await _to(db, service, down_revision, down=True)  # one step down, data in place
            older = await _schema(db)  # what a revision adds (tables, columns) goes with it
            assert await _missing(db, written, older) == [], (
                f"{service}: data lost going down to {down_revision}"
            )
            await _to(db, service, "head")
            assert await _missing(db, written, older) == [], (
                f"{service}: data lost going {down_revision} -> head"
            )
        await _to(db, service, "base", down=True)  # the initial revision: no older schema to keep data in
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
        assert set(tables) <= {"alembic_version"}
        await db.migrate(f"{service}.migrations")
        rewritten = await _populate(db, _with_messaging(metadata))  # head is usable again
        assert await _missing(db, rewritten) == []
    finally:
        await db.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_migrate_from_the_previous_revision_with_data(
    service: str, backend: str, tmp_path: Any
) -> None:
    """For every revision: a database populated at its predecessor upgrades to it, and on to head, keeping
    every value. The initial revision's predecessor is the empty database."""
    chain = _chain(service)
    assert chain[0][0] is None, f"{service}: the first revision must start from base"
    steps = 0
    for down_revision, revision in chain:
        url = f"sqlite+aiosqlite:///{tmp_path / f'{revision}.sqlite'}"
        if backend == "postgres":
            url = await create_postgres_database()
        db = Database(url)
        try:
            written: dict[str, list[dict[str, Any]]] = {}
            if down_revision is not None:
                await _to(db, service, down_revision)
                written = await _populate(db, None, service)  # the tables as the previous revision made them
                assert written, f"{service}: nothing to populate at {down_revision}"
            await _to(db, service, revision)
            assert await _missing(db, written) == [], f"{service}: {down_revision} -> {revision} lost data"
            await _to(db, service, "head")
            assert await _missing(db, written) == [], f"{service}: {revision} -> head lost data"
            metadata = importlib.import_module(f"{service}.models").METADATA
            assert await _missing(db, await _populate(db, _with_messaging(metadata))) == []
            steps += 1
        finally:
            await db.dispose()
            if backend == "postgres":
                await drop_postgres_database(url)
    assert steps == len(chain) >= 1


def _with_messaging(metadata: MetaData) -> MetaData:
    """The service's tables and the shared outbox/inbox tables, in one MetaData (for insert order)."""
    merged = MetaData()
    for source in (metadata, MESSAGING_METADATA):
        for table in source.tables.values():
            table.to_metadata(merged)
    return merged
