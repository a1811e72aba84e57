"""The product service's use-cases: search and read the catalog; admins add and change products and
categories; signed-in users review products.

Writes take a session already inside a transaction (``TransactionDep``) and never commit; taken unique keys
(sku, category name, one review per user) answer 409 from a flush in a savepoint, before the commit. The
public reads take the :class:`~mart_common.db.Database` and open a read session themselves: they run only
when the catalog cache misses (routes/products.py), so a cached answer costs no session at all.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from mart_common.clock import utcnow
from mart_common.db import Database, flush_unique
from mart_common.deps import Page, paged, paged_then_read
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound, Unprocessable
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from product_service import domain, events, search
from product_service.models import Category, ListedCount, Product, Review
from product_service.schemas import CategoryCreate, ProductCreate, ProductPublic, ProductUpdate, ReviewCreate

# --- the public catalog ---------------------------------------------------------------------------


# Each order ends with id, so pages are stable; newest first is the listing indexes' order read backwards.
def _sorts(c: Any) -> dict[str, tuple[Any, ...]]:
    return {
        "name": (func.lower(c.name).asc(), c.id.asc()),
        "-name": (func.lower(c.name).desc(), c.id.asc()),
        "price": (c.price_cents.asc(), c.id.asc()),
        "-price": (c.price_cents.desc(), c.id.asc()),
        "-created_at": (c.created_at.desc(), c.id.desc()),
    }


_SORTS = _sorts(Product.__table__.c)
_PUBLIC = list(ProductPublic.model_fields)
_PUBLIC_COLUMNS = [Product.__table__.c[name] for name in _PUBLIC]
_SORT_KEYS = [Product.__table__.c[name] for name in ("id", "name", "price_cents", "created_at")]
_ONE_QUERY = select(*_PUBLIC_COLUMNS).where(Product.id == bindparam("product_id"))


@functools.cache
def _search_query(
    sort: str, text: bool, category: bool, min_price: bool, max_price: bool, *, postgres: bool
) -> Select[Any]:
    """The catalog search for one combination of filters, built once: plain rows, not ORM objects (a
    read-only page needs no identity map), values as bound parameters (docs/adr/0021-catalog-reads.md).
    ``sort`` "relevance": best text match first (search.py).

    With a text, the page is taken from the newest matches only (:func:`search.window`) and its total
    counts them: at most the window, plus one when more matched (docs/adr/0056-search-window.md). The
    window carries the sort keys only; the page's 20 or so rows are then read whole."""
    # A text search ranks and sorts its window of matches by their sort keys, then reads the page's rows.
    query = select(*_SORT_KEYS) if text else select(*_PUBLIC_COLUMNS)
    if postgres or not text:  # SQLite's text index holds only listed products
        query = query.where(Product.archived.is_(False))
    if category:
        query = query.where(Product.category_id == bindparam("category_id"))
    if min_price:
        query = query.where(Product.price_cents >= bindparam("min_price"))
    if max_price:
        query = query.where(Product.price_cents <= bindparam("max_price"))
    if text:
        newest, matches = search.window(query, postgres=postgres)
        sorts = _sorts(newest.c)
        order = (
            sorts[sort]
            if sort != "relevance"
            else (search.relevance(newest, postgres=postgres), *sorts["-created_at"])
        )
        total = select(func.count()).select_from(matches)
        return paged_then_read(newest, order, Product.__table__, _PUBLIC_COLUMNS, total)
    total = None
    if not (min_price or max_price):  # the whole listing or a category: the kept count
        total = select(func.coalesce(func.sum(ListedCount.n), 0))
        if category:
            total = total.where(ListedCount.category_key == bindparam("category_id"))
    return paged(query.order_by(*_SORTS[sort]), total)


async def search_products(
    db: Database,
    page: Page,
    text: str,
    category_id: uuid.UUID | None,
    min_price_cents: int | None,
    max_price_cents: int | None,
    sort: str | None,
    *,
    window: int,
) -> dict[str, Any]:
    """A page of listed (not archived) products matching ``text`` (words of the name, sku or description:
    search.py), the category and the price bounds, as rows of the public columns. Without ``sort``: best
    match first when there is a text, else newest first.

    A text search considers the ``window`` newest products that match it and the filters: the page is
    taken from those and ``total`` counts them; ``total_exact`` is false when more matched."""
    if not domain.price_range_ok(min_price_cents, max_price_cents):
        raise Unprocessable("min_price_cents is above max_price_cents.", slug="bad-price-range")
    postgres = db.is_postgres
    query_words = search.words(text)
    if text and not query_words:
        return page.wrap([], 0)  # no letter or digit: no word to match
    values: dict[str, Any] = {
        "category_id": category_id,
        "min_price": min_price_cents,
        "max_price": max_price_cents,
    }
    async with db.read_rows() as connection:
        if query_words:
            engine_query = await search.plan(connection, query_words, postgres=postgres)
            if engine_query is None:
                return page.wrap([], 0)  # a word that matches no indexed word
            values[search.param_name(postgres=postgres)] = engine_query
            values[search.WINDOW] = window
        query = _search_query(
            sort or ("relevance" if query_words else "-created_at"),
            bool(query_words),
            category_id is not None,
            min_price_cents is not None,
            max_price_cents is not None,
            postgres=postgres,
        )
        params = {k: v for k, v in values.items() if v is not None}
        rows, total = await page.rows(connection, query, params)
    if query_words and total > window:  # the window's matches and at least one more
        return page.wrap(rows, window, total_exact=False)
    return page.wrap(rows, total)


async def get_product(db: Database, product_id: uuid.UUID, *, include_archived: bool = False) -> Any:
    """One product's public columns; an archived one only with ``include_archived`` (else 404)."""
    async with db.read_rows() as connection:
        row = (await connection.execute(_ONE_QUERY, {"product_id": product_id})).one_or_none()
    if row is None or (row.archived and not include_archived):
        raise NotFound("No such product.")
    return row


# --- products (admins) ----------------------------------------------------------------------------


def _sku_taken(sku: str) -> Conflict:
    return Conflict(f"A product with sku {sku!r} already exists.", slug="sku-taken")


async def _product_for_update(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    # FOR UPDATE on PostgreSQL: concurrent changes of one product queue up, so versions never collide.
    return await session.scalar(select(Product).where(Product.id == product_id).with_for_update())


async def _check_category(session: AsyncSession, category_id: uuid.UUID | None) -> None:
    if category_id is not None and await session.get(Category, category_id) is None:
        raise Unprocessable(f"There is no category {category_id}.", slug="unknown-category")


async def create_product(session: AsyncSession, body: ProductCreate) -> Product:
    """A new product (409 for a taken sku, 422 for an unknown category); publishes ProductCreated."""
    await _check_category(session, body.category_id)
    if await session.scalar(select(Product.id).where(Product.sku == body.sku)) is not None:
        raise _sku_taken(body.sku)
    product = Product(**body.model_dump())
    session.add(product)
    await flush_unique(session, _sku_taken(body.sku))
    await record_event(session, events.product_created(product), key=str(product.id))
    return product


async def update_product(session: AsyncSession, product_id: uuid.UUID, body: ProductUpdate) -> Product:
    """Change the fields sent (archived products are not found). A real change makes a new version and
    publishes ProductUpdated; nothing new changes nothing."""
    product = await _product_for_update(session, product_id)
    if product is None or product.archived:
        raise NotFound("No such product.")
    changes = body.model_dump(exclude_unset=True)
    nulled = domain.nulled_field(changes)
    if nulled is not None:
        raise Unprocessable(f"{nulled} cannot be null.")
    if "category_id" in changes and changes["category_id"] != product.category_id:
        await _check_category(session, changes["category_id"])
    if "sku" in changes and changes["sku"] != product.sku:
        taken = await session.scalar(select(Product.id).where(Product.sku == changes["sku"]))
        if taken is not None:
            raise _sku_taken(changes["sku"])
    changed = domain.changed_fields(product, changes)
    if not changed:
        return product  # Nothing new: no version bump, no event.
    for field, value in changed.items():
        setattr(product, field, value)
    product.version += 1
    product.updated_at = utcnow()
    await flush_unique(session, _sku_taken(str(changes.get("sku"))))
    await record_event(session, events.product_updated(product), key=str(product.id))
    return product


async def archive_product(session: AsyncSession, product_id: uuid.UUID) -> None:
    """Take a product out of the catalog for good (it can no longer be ordered); publishes
    ProductArchived once: archiving an archived product changes nothing."""
    product = await _product_for_update(session, product_id)
    if product is None:
        raise NotFound("No such product.")
    if not product.archived:
        product.archived = True
        product.version += 1
        product.updated_at = utcnow()
        await record_event(session, events.product_archived(product), key=str(product.id))


# --- categories -----------------------------------------------------------------------------------


async def list_categories(session: AsyncSession, page: Page) -> dict[str, object]:
    """A page of categories by name."""
    return await page.of(session, select(Category).order_by(Category.name_key, Category.id))


async def create_category(session: AsyncSession, body: CategoryCreate) -> Category:
    """A new category (409 when one has the same name, whatever its case)."""
    key = domain.category_key(body.name)
    conflict = Conflict(f"A category named {body.name!r} already exists.", slug="category-exists")
    if await session.scalar(select(Category.id).where(Category.name_key == key)) is not None:
        raise conflict
    category = Category(name=body.name, name_key=key, description=body.description)
    session.add(category)
    await flush_unique(session, conflict)
    return category


# --- reviews --------------------------------------------------------------------------------------


async def _listed_product(session: AsyncSession, product_id: uuid.UUID, *, lock: bool = False) -> Product:
    query = select(Product).where(Product.id == product_id)
    if lock:
        query = query.with_for_update()
    product = await session.scalar(query)
    if product is None or product.archived:
        raise NotFound("No such product.")
    return product


async def create_review(
    session: AsyncSession, product_id: uuid.UUID, user_id: uuid.UUID, body: ReviewCreate
) -> Review:
    """A user's one review of a listed product (409 for a second); the product's ``rating_avg`` and
    ``rating_count`` are recomputed from all its reviews."""
    # The product row is locked first: concurrent reviews of one product recompute in turn, never from
    # a snapshot missing the other's review.
    product = await _listed_product(session, product_id, lock=True)
    duplicate = Conflict("You have already reviewed this product.", slug="already-reviewed")
    existing = await session.scalar(
        select(Review.id).where(Review.product_id == product_id, Review.user_id == user_id)
    )
    if existing is not None:
        raise duplicate
    review = Review(product_id=product_id, user_id=user_id, rating=body.rating, comment=body.comment)
    session.add(review)
    await flush_unique(session, duplicate)
    count, average = (
        await session.execute(
            select(func.count(Review.id), func.avg(Review.rating)).where(Review.product_id == product_id)
        )
    ).one()
    product.rating_count, product.rating_avg = domain.rating_summary(count, average)
    return review


async def list_reviews(session: AsyncSession, product_id: uuid.UUID, page: Page) -> dict[str, object]:
    """A page of a listed product's reviews, newest first (404 for an unknown or archived product)."""
    await _listed_product(session, product_id)
    query = (
        select(Review).where(Review.product_id == product_id).order_by(Review.created_at.desc(), Review.id)
    )
    return await page.of(session, query)
