"""Alembic glue: each service's ``migrations/env.py`` is two lines calling :func:`run_env`.

Migrations run at service start (``Database.migrate``) or by ``mart migrate``; autogenerate works with
``uv run alembic -c <service>/alembic.ini revision --autogenerate``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

from mart_common.messaging import MESSAGING_METADATA


def run_env(service_metadata: MetaData, extra: Sequence[MetaData] = ()) -> None:
    """Run Alembic for a service: its tables plus the shared outbox/inbox tables."""
    targets = [service_metadata, MESSAGING_METADATA, *extra]
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=targets, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=targets)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or ""
    # Autogenerate from the command line uses a sync driver for the same database.
    url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=targets, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
