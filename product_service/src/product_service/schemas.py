"""The product service's HTTP request and response models (docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from mart_common.clock import UtcDatetime
from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PField

from product_service.domain import MAX_PRICE_CENTS, MAX_RATING, MIN_RATING

# PostgreSQL text cannot hold NUL characters: refuse them at the edge (422), never a 500 from the driver.
NO_NUL = r"^[^\x00]*$"

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

    rating: Annotated[int, PField(ge=MIN_RATING, le=MAX_RATING, strict=True)]
    comment: Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] = ""


class ReviewPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    product_id: uuid.UUID
    user_id: uuid.UUID
    rating: int
    comment: str
    created_at: UtcDatetime
