"""order counts and the newest-first index: everyone's orders at a cost that does not grow with them

Revision ID: 0002
Revises: 0001
``order_counts``: how many orders there are, in slots (the sum), kept by triggers on ``orders``: on
PostgreSQL statement triggers add a statement's rows to a random one of 16 slots, so concurrent checkouts
rarely wait for the same row; on SQLite (one writer at a time) row triggers keep slot 0.
``ix_orders_created``: everyone's orders, newest first.
"""

# ruff: noqa: S608 - the SQL below is constant text

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOTS = 16
_PG_ADD = (
    "INSERT INTO order_counts (slot, n) SELECT floor(random() * {slots})::int, {sign}count(*) FROM {rows}"
    " HAVING count(*) > 0 ON CONFLICT (slot) DO UPDATE SET n = order_counts.n + excluded.n"
)
_PG_UP = [
    f"""CREATE FUNCTION order_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_PG_ADD.format(slots=SLOTS, sign="", rows="added")};
    ELSE
        {_PG_ADD.format(slots=SLOTS, sign="-", rows="gone")};
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER order_counts_on_insert AFTER INSERT ON orders REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION order_counts_apply()",
    "CREATE TRIGGER order_counts_on_delete AFTER DELETE ON orders REFERENCING OLD TABLE AS gone"
    " FOR EACH STATEMENT EXECUTE FUNCTION order_counts_apply()",
]
_PG_DOWN = [
    "DROP TRIGGER order_counts_on_delete ON orders",
    "DROP TRIGGER order_counts_on_insert ON orders",
    "DROP FUNCTION order_counts_apply()",
]
_SQLITE_UP = [
    "CREATE TRIGGER order_counts_on_insert AFTER INSERT ON orders BEGIN"
    " INSERT INTO order_counts (slot, n) VALUES (0, 1) ON CONFLICT (slot) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER order_counts_on_delete AFTER DELETE ON orders BEGIN"
    " UPDATE order_counts SET n = n - 1 WHERE slot = 0; END",
]
_SQLITE_DOWN = ["DROP TRIGGER order_counts_on_delete", "DROP TRIGGER order_counts_on_insert"]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "order_counts",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("slot"),
    )
    with op.batch_alter_table("orders", schema=None, recreate="never") as batch_op:
        batch_op.create_index("ix_orders_created", ["created_at", "id"], unique=False)
    op.execute("INSERT INTO order_counts (slot, n) SELECT 0, count(*) FROM orders HAVING count(*) > 0")
    for statement in _PG_UP if op.get_bind().dialect.name == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in _PG_DOWN if op.get_bind().dialect.name == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("orders", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_orders_created")
    op.drop_table("order_counts")
