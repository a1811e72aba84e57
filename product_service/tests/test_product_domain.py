"""The catalog's rules on their own (no app, no database)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from product_service import domain


@pytest.mark.parametrize(
    ("low", "high", "ok"),
    [(None, None, True), (5, None, True), (None, 5, True), (5, 5, True), (4, 5, True), (6, 5, False)],
)
def test_a_price_range_is_refused_only_when_its_bounds_are_reversed(low, high, ok) -> None:
    assert domain.price_range_ok(low, high) is ok


def test_category_names_are_one_regardless_of_case() -> None:
    assert domain.category_key("Books") == domain.category_key("BOOKS") == "books"


def test_only_the_fields_that_must_stay_set_cannot_be_nulled() -> None:
    assert domain.nulled_field({"name": "x", "category_id": None}) is None  # null removes the category
    assert domain.nulled_field({"price_cents": None}) == "price_cents"
    assert domain.nulled_field({}) is None


def test_a_change_is_only_what_differs() -> None:
    product = SimpleNamespace(name="Mug", price_cents=500, category_id=None)
    assert domain.changed_fields(product, {"name": "Mug", "price_cents": 600}) == {"price_cents": 600}
    assert domain.changed_fields(product, {"name": "Mug", "category_id": None}) == {}


def test_rating_summary_is_exact_to_four_decimals_and_zero_without_reviews() -> None:
    assert domain.rating_summary(0, None) == (0, 0.0)
    assert domain.rating_summary(3, 4.666666) == (3, 4.6667)
