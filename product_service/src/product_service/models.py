"""The catalog's tables (its own registry) and the request/response schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from mart_common.clock import UtcDatetime, utcnow
from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PField
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
        Index("ix_products_listing", "archived", "created_at"),
        Index("ix_products_category", "category_id"),
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

# --- schemas ---------------------------------------------------------------------------------------

# PostgreSQL text cannot hold NUL characters: refuse them at the edge (422), never a 500 from the driver.
NO_NUL = r"^[^\x00]*$"
MAX_PRICE_CENTS = 1_000_000_000_000  # 10 billion in major units: far above any real price, far below BIGINT

Sku = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=5000, pattern=NO_NUL)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
PriceCents = Annotated[int, PField(gt=0, le=MAX_PRICE_CENTS, strict=True)]
SortOrder = Literal["name", "-name", "price", "-price", "-created_at"]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    description: Description = ""
    price_cents: PriceCents
    currency: Currency = "USD"
    category_id: uuid.UUID | None = None


class ProductUpdate(BaseModel):
    """Partial update: only the fields sent change (``category_id: null`` removes the category)."""

    model_config = ConfigDict(extra="forbid")

    sku: Sku | None = None
    name: Name | None = None
    description: Description | None = None
    price_cents: PriceCents | None = None
    currency: Currency | None = None
    category_id: uuid.UUID | None = None


class ProductPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category_id: uuid.UUID | None
    archived: bool
    version: int
    rating_avg: float
    rating_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)
    ]
    description: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] = ""


class CategoryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Annotated[int, PField(ge=1, le=5, strict=True)]
    comment: Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] = ""


class ReviewPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    product_id: uuid.UUID
    user_id: uuid.UUID
    rating: int
    comment: str
    created_at: UtcDatetime
