"""listing counts and indexes: totals and pages that cost the same at any catalog size

Revision ID: 0003
Revises: 0002
``listed_counts``: listed products per category (the nil uuid: without one), kept by triggers on
``products`` (statement triggers over the changed rows on PostgreSQL, row triggers on SQLite). The listing
indexes end with ``created_at, id``, the order of the newest-first list.
"""

# ruff: noqa: S608 - the SQL below is constant text

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
_SQLITE_NIL = "'" + "0" * 32 + "'"


def _pg_delta(rows: str, sign: str) -> str:
    return f"SELECT coalesce(category_id, {_PG_NIL}) AS k, {sign}1 AS d FROM {rows} WHERE NOT archived"


_PG_APPLY = "INSERT INTO listed_counts (category_key, n) SELECT k, sum(d) FROM ({}) AS x GROUP BY k HAVING sum(d) <> 0 ON CONFLICT (category_key) DO UPDATE SET n = listed_counts.n + excluded.n"  # noqa: E501

_PG_UP = [
    f"""CREATE FUNCTION listed_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_PG_APPLY.format(_pg_delta("added", "+"))};
    ELSIF TG_OP = 'DELETE' THEN
        {_PG_APPLY.format(_pg_delta("gone", "-"))};
    ELSE
        {_PG_APPLY.format(_pg_delta("added", "+") + " UNION ALL " + _pg_delta("gone", "-"))};
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER listed_counts_on_insert AFTER INSERT ON products REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION listed_counts_apply()",
    "CREATE TRIGGER listed_counts_on_update AFTER UPDATE ON products REFERENCING OLD TABLE AS gone"
    " NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION listed_counts_apply()",
    "CREATE TRIGGER listed_counts_on_delete AFTER DELETE ON products REFERENCING OLD TABLE AS gone"
    " FOR EACH STATEMENT EXECUTE FUNCTION listed_counts_apply()",
]
_PG_DOWN = [
    "DROP TRIGGER listed_counts_on_delete ON products",
    "DROP TRIGGER listed_counts_on_update ON products",
    "DROP TRIGGER listed_counts_on_insert ON products",
    "DROP FUNCTION listed_counts_apply()",
]

_SQLITE_ADD = (
    "INSERT INTO listed_counts (category_key, n)"
    f" SELECT coalesce(new.category_id, {_SQLITE_NIL}), 1 WHERE NOT new.archived"
    " ON CONFLICT (category_key) DO UPDATE SET n = n + 1;"
)
_SQLITE_REMOVE = (
    f"UPDATE listed_counts SET n = n - 1 WHERE category_key = coalesce(old.category_id, {_SQLITE_NIL})"
    " AND NOT old.archived;"
)
_SQLITE_UP = [
    f"CREATE TRIGGER listed_counts_on_insert AFTER INSERT ON products BEGIN {_SQLITE_ADD} END",
    f"CREATE TRIGGER listed_counts_on_delete AFTER DELETE ON products BEGIN {_SQLITE_REMOVE} END",
    "CREATE TRIGGER listed_counts_on_update AFTER UPDATE OF archived, category_id ON products"
    f" BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END",
]
_SQLITE_DOWN = [
    "DROP TRIGGER listed_counts_on_update",
    "DROP TRIGGER listed_counts_on_delete",
    "DROP TRIGGER listed_counts_on_insert",
]


def _indexes(listing: list[str], category: list[str]) -> None:
    with op.batch_alter_table("products", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_products_listing")
        batch_op.drop_index("ix_products_category")
        batch_op.create_index("ix_products_listing", listing, unique=False)
        batch_op.create_index("ix_products_category", category, unique=False)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "listed_counts",
        sa.Column("category_key", sa.Uuid(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category_key"),
    )
    _indexes(["archived", "created_at", "id"], ["category_id", "archived", "created_at", "id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    nil = _PG_NIL if postgres else _SQLITE_NIL
    op.execute(
        "INSERT INTO listed_counts (category_key, n)"
        f" SELECT coalesce(category_id, {nil}), count(*) FROM products WHERE NOT archived"
        f" GROUP BY coalesce(category_id, {nil})"
    )
    for statement in _PG_UP if postgres else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in _PG_DOWN if op.get_bind().dialect.name == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
    _indexes(["archived", "created_at"], ["category_id"])
    op.drop_table("listed_counts")
