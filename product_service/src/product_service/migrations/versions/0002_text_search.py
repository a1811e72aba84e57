"""text search: full-text indexes of the listed products

Revision ID: 0002
Revises: 0001
PostgreSQL: pg_trgm (a trusted extension: the database's owner creates it,
docs/adr/0052-catalog-text-search.md), a GIN index on the products' text-search vector, and
``product_terms`` (every indexed word, kept by statement triggers) with a trigram index. SQLite: the FTS5
table ``products_fts`` (external content: the products' rowids), kept by triggers, and its vocabulary
``products_fts_terms``. The queries are in ``search.py``.

A later revision that rebuilds ``products`` on SQLite (a batch "move and copy") changes rowids and drops the
triggers: it must recreate them and rebuild ``products_fts`` (``INSERT INTO products_fts(products_fts)
VALUES ('rebuild')``).
"""

# ruff: noqa: S608 - the SQL below is constant text

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The products' text-search vector as this revision indexes it (revision 0004 replaces it with a column):
# ASCII punctuation read as spaces first, so that the parser sees words and numbers only — it would read
# "<script>...</script>" as a markup tag and drop it, and "help@mart.example" or "/usr/share" as one token.
_DOCUMENT = (
    "to_tsvector('simple'::regconfig,"
    " regexp_replace(name || ' ' || sku || ' ' || description, '[[:punct:]]+', ' ', 'g'))"
)
_PG_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # fastupdate off: a write updates the index at once, so that no search scans a list of pending entries
    # that grows with the writes until the next vacuum (a catalog is read far more than written).
    f"CREATE INDEX ix_products_text ON products USING gin (({_DOCUMENT})) WITH (fastupdate = off)"
    " WHERE archived IS FALSE",
    'CREATE TABLE product_terms (term text COLLATE "C" PRIMARY KEY)',
    "CREATE INDEX ix_product_terms_trigram ON product_terms USING gin (term gin_trgm_ops)"
    " WITH (fastupdate = off)",
    f"""CREATE FUNCTION product_terms_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_terms (term)
    SELECT DISTINCT t.lexeme FROM changed, unnest({_DOCUMENT}) AS t
    WHERE NOT changed.archived
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER product_terms_on_insert AFTER INSERT ON products REFERENCING NEW TABLE AS changed"
    " FOR EACH STATEMENT EXECUTE FUNCTION product_terms_add()",
    "CREATE TRIGGER product_terms_on_update AFTER UPDATE ON products REFERENCING NEW TABLE AS changed"
    " FOR EACH STATEMENT EXECUTE FUNCTION product_terms_add()",
    f"""INSERT INTO product_terms (term)
    SELECT DISTINCT t.lexeme FROM products, unnest({_DOCUMENT}) AS t WHERE NOT products.archived
    ON CONFLICT DO NOTHING""",
]
_PG_DOWN = [
    "DROP TRIGGER product_terms_on_update ON products",
    "DROP TRIGGER product_terms_on_insert ON products",
    "DROP FUNCTION product_terms_add()",
    "DROP TABLE product_terms",
    "DROP INDEX ix_products_text",
]

_FTS_ROW = (
    "INSERT INTO products_fts(rowid, name, sku, description)"
    " VALUES (new.rowid, new.name, new.sku, new.description)"
)
_FTS_GONE = (
    "INSERT INTO products_fts(products_fts, rowid, name, sku, description)"
    " VALUES ('delete', old.rowid, old.name, old.sku, old.description)"
)
_SQLITE_UP = [
    "CREATE VIRTUAL TABLE products_fts USING fts5(name, sku, description, content='products',"
    " content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
    "CREATE VIRTUAL TABLE products_fts_terms USING fts5vocab(products_fts, 'row')",
    "CREATE TRIGGER products_fts_insert AFTER INSERT ON products"
    f" WHEN NOT new.archived BEGIN {_FTS_ROW}; END",
    "CREATE TRIGGER products_fts_delete AFTER DELETE ON products"
    f" WHEN NOT old.archived BEGIN {_FTS_GONE}; END",
    # One trigger, its statements in this order: the old words out, then the new ones in.
    "CREATE TRIGGER products_fts_update AFTER UPDATE OF name, sku, description, archived ON products BEGIN"
    " INSERT INTO products_fts(products_fts, rowid, name, sku, description)"
    " SELECT 'delete', old.rowid, old.name, old.sku, old.description WHERE NOT old.archived;"
    " INSERT INTO products_fts(rowid, name, sku, description)"
    " SELECT new.rowid, new.name, new.sku, new.description WHERE NOT new.archived; END",
    "INSERT INTO products_fts(rowid, name, sku, description)"
    " SELECT rowid, name, sku, description FROM products WHERE NOT archived",
]
_SQLITE_DOWN = [
    "DROP TRIGGER products_fts_update",
    "DROP TRIGGER products_fts_delete",
    "DROP TRIGGER products_fts_insert",
    "DROP TABLE products_fts_terms",
    "DROP TABLE products_fts",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    """Upgrade schema."""
    _run(_PG_UP if op.get_bind().dialect.name == "postgresql" else _SQLITE_UP)


def downgrade() -> None:
    """Downgrade schema (pg_trgm stays: other objects of the database may use it)."""
    _run(_PG_DOWN if op.get_bind().dialect.name == "postgresql" else _SQLITE_DOWN)
