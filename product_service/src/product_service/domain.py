"""The catalog's rules, without framework or database: prices, ratings, category names, what a change is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_PRICE_CENTS = 1_000_000_000_000  # 10 billion in major units: far above any real price, far below BIGINT
MIN_RATING, MAX_RATING = 1, 5  # a review's stars

# Fields of a product a partial update may change but never empty (category_id: null removes the category).
NOT_NULLABLE = ("sku", "name", "description", "price_cents", "currency")


def price_range_ok(min_price_cents: int | None, max_price_cents: int | None) -> bool:
    """A search's price bounds, when both are given, are in order."""
    return min_price_cents is None or max_price_cents is None or min_price_cents <= max_price_cents


def category_key(name: str) -> str:
    """Category names are unique regardless of case: "Books" and "books" are one category."""
    return name.lower()


def nulled_field(changes: Mapping[str, Any]) -> str | None:
    """The first field a partial update would set to null although it cannot be, if any."""
    return next((field for field in NOT_NULLABLE if field in changes and changes[field] is None), None)


def changed_fields(current: object, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The requested changes that change something; none: no new version, no event."""
    return {field: value for field, value in changes.items() if getattr(current, field) != value}


def rating_summary(count: int, average: float | None) -> tuple[int, float]:
    """A product's ``rating_count`` and ``rating_avg`` (4 decimals; 0 without reviews)."""
    return int(count), round(float(average or 0), 4)
