"""search vector: the products' weighted text-search vector as a column, indexed whole

Revision ID: 0004
Revises: 0003
PostgreSQL only (SQLite's FTS5 table of revision 0002 is unchanged): ``products.search_vector``, a stored
generated column of the weighted vector (name and sku weight A, description D; search.py queries it),
and a GIN index on it over every product, archived ones too, in place of revision 0002's partial index on
the unweighted expression. A query matches and ranks on the column, so no row's vector is computed at
read time; and the planner estimates a match from the column's statistics (ANALYZE gathers the most
common words of a plain column; it does not for the expression of a partial index), so a word most
products have walks the newest-first listing index and a rare one reads the text index
(docs/adr/0056-search-window.md).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The weighted vector as this revision stores it: ASCII punctuation read as spaces first, as in revision
# 0002.
def _vector(text_sql: str) -> str:
    return f"to_tsvector('simple'::regconfig, regexp_replace({text_sql}, '[[:punct:]]+', ' ', 'g'))"


_NAME_AND_SKU = _vector("name || ' ' || sku")
_WEIGHTED = f"setweight({_NAME_AND_SKU}, 'A') || setweight({_vector('description')}, 'D')"
_DOCUMENT = _vector("name || ' ' || sku || ' ' || description")  # revision 0002's indexed expression

_PG_UP = [
    f"ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({_WEIGHTED}) STORED",
    # fastupdate off: a write updates the index at once (revision 0002's reason).
    "CREATE INDEX ix_products_search ON products USING gin (search_vector) WITH (fastupdate = off)",
    "DROP INDEX ix_products_text",
    "ANALYZE products",  # the column's statistics, for the plans above, before the first search
]
_PG_DOWN = [
    f"CREATE INDEX ix_products_text ON products USING gin (({_DOCUMENT})) WITH (fastupdate = off)"
    " WHERE archived IS FALSE",
    "DROP INDEX ix_products_search",
    "ALTER TABLE products DROP COLUMN search_vector",
]


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_UP:
            op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DOWN:
            op.execute(statement)
