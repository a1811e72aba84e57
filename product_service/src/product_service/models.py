"""The catalog's tables (its own registry)."""

from __future__ import annotations

import uuid
from datetime import datetime

from mart_common.clock import utcnow
from mart_common.migrations import UNMAPPED
from sqlalchemy import BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class CatalogTable(SQLModel, registry=registry()):
    pass


class Category(CatalogTable, table=True):
    __tablename__ = "categories"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    name_key: str = Field(max_length=100, unique=True)  # lower-cased name: "Books" and "books" are one
    description: str = Field(default="", max_length=1000)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Product(CatalogTable, table=True):
    __tablename__ = "products"
    __table_args__ = (
        # The listing's order (newest first, then id: -created_at) read straight from an index, with or
        # without a category: a page costs the same whatever the catalog's size.
        Index("ix_products_listing", "archived", "created_at", "id"),
        Index("ix_products_category", "category_id", "archived", "created_at", "id"),
        Index("ix_products_price", "price_cents"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    sku: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=5000)
    price_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    category_id: uuid.UUID | None = Field(default=None, foreign_key="categories.id")
    archived: bool = Field(default=False)
    version: int = Field(default=1)  # +1 on every change; events carry it so read models skip stale ones
    rating_avg: float = Field(default=0.0)
    rating_count: int = Field(default=0)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class ListedCount(CatalogTable, table=True):
    """How many listed (not archived) products a category has; the nil uuid counts those without one. The
    catalog's totals without counting rows; kept by triggers on ``products`` (migration 0003)."""

    __tablename__ = "listed_counts"

    category_key: uuid.UUID = Field(primary_key=True)
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class Review(CatalogTable, table=True):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("product_id", "user_id", name="uq_reviews_product_user"),
        Index("ix_reviews_product_created", "product_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    product_id: uuid.UUID = Field(foreign_key="products.id")
    user_id: uuid.UUID
    rating: int
    comment: str = Field(default="", max_length=2000)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


METADATA = CatalogTable.metadata
# The full-text search's column, index and tables (migrations 0002 and 0004, search.py): PostgreSQL's
# generated vector column, its index and the vocabulary; SQLite's FTS5 table, its shadow tables and its
# vocabulary.
METADATA.info[UNMAPPED] = (
    "products.search_vector",
    "ix_products_search",
    "product_terms",
    "products_fts",
    "products_fts_config",
    "products_fts_data",
    "products_fts_docsize",
    "products_fts_idx",
    "products_fts_terms",
)
