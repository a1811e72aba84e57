"""Alembic glue: each service's ``migrations/env.py`` is two lines calling :func:`run_env`.

Migrations run at service start (``Database.migrate``) or by ``mart migrate``; autogenerate works with
``uv run alembic -c <service>/alembic.ini revision --autogenerate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

from mart_common.messaging import MESSAGING_METADATA

UNMAPPED = "unmapped"
"""``MetaData.info`` key: names of the tables, indexes and columns (``table.column``) a service's migrations
make without a model (a full-text index, its tables, a generated column only one database has, say):
autogenerate neither drops nor compares them."""


def include_object(metadatas: Iterable[MetaData]) -> Callable[..., bool]:
    """Alembic's ``include_object`` hook leaving out the :data:`UNMAPPED` tables, indexes and columns."""
    skipped = {name for metadata in metadatas for name in metadata.info.get(UNMAPPED, ())}

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "column":
            return f"{obj.table.name}.{name}" not in skipped
        return not (type_ in ("table", "index") and name in skipped)

    return include


def run_env(service_metadata: MetaData, extra: Sequence[MetaData] = ()) -> None:
    """Run Alembic for a service: its tables plus the shared outbox/inbox tables."""
    targets = [service_metadata, MESSAGING_METADATA, *extra]
    options: dict[str, Any] = {"target_metadata": targets, "include_object": include_object(targets)}
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, render_as_batch=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or ""
    # Autogenerate from the command line uses a sync driver for the same database.
    url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, render_as_batch=True, **options)
        with context.begin_transaction():
            context.run_migrations()


def create_messaging_tables() -> None:
    """Create the outbox and inbox tables (revision 1 of their shape) in a service's initial migration.

    Written out here once, not in each service; a later change to these tables gets its own helper
    (``..._v2``) called from a new revision in every service.
    """
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("ce_type", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("ce_type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "seq"], unique=False)


def drop_messaging_tables() -> None:
    """The inverse of :func:`create_messaging_tables`."""
    from alembic import op

    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("inbox")
