"""Each service's migrations produce exactly the schema its models declare, on SQLite and PostgreSQL,
and can be undone (downgrade to base) and redone."""

from __future__ import annotations

import importlib
from importlib import resources

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from mart_common.db import Database
from mart_common.messaging import MESSAGING_METADATA

SERVICES = [
    "user_service",
    "product_service",
    "inventory_service",
    "order_service",
    "payment_service",
    "notification_service",
]


def _diff(sync_conn, metadata):
    ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return [
        d
        for d in compare_metadata(ctx, [metadata, MESSAGING_METADATA])
        if d[0] != "remove_table" or d[1].name != "alembic_version"
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
