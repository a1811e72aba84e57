"""The catalog's text search: word prefixes and typo corrections over a full-text index, best match first.

A query's words (letters and digits; case-insensitive) must all match some word of a listed product's name,
sku or description:

- a query word matches every indexed word it begins ("kett" finds "kettle"); when it begins at most
  :data:`MAX_EXPANDED` of them, the engine is asked for those words (:func:`_prefix`), else for the prefix;
- a query word of 4 letters or more that begins no indexed word is corrected instead: it matches the indexed
  words that start with the same letter and are at most one edit away (two from 8 letters on): a letter
  added, left out, changed, or two neighbours swapped ("kettel" finds "kettle"). On PostgreSQL a
  correction also shares enough letter triples with the word (``pg_trgm``'s similarity, 0.3), which is what
  its index looks up.

Relevance (the order when ``q`` is given and no ``sort`` is): name and sku matches weigh ten times
description matches (PostgreSQL ``ts_rank`` with weights A and D, SQLite FTS5 ``bm25`` with 10/10/1), then
newest first, then id. A query word that stands for several indexed words (those it begins, or its
corrections) is ranked as any of them.

A query considers at most the newest matches that pass the request's other filters (the window,
``MART_SEARCH_WINDOW``): they are ranked, sorted and counted, the older ones not (:func:`window`;
docs/adr/0056-search-window.md).

PostgreSQL: the products' weighted ``simple`` text-search vector as a stored generated column,
``products.search_vector``, with a GIN index, and ``product_terms`` (every word ever indexed, kept by
statement triggers) with a trigram index for the corrections. SQLite (the embedded mode): the FTS5 table
``products_fts`` over the listed products, kept by triggers, and its ``fts5vocab`` view
``products_fts_terms``. Both are made by the migrations (``migrations/versions/0002_text_search.py``,
``0004_search_vector.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mart_common.rows import RowReader
from rapidfuzz.distance import DamerauLevenshtein
from sqlalchemy import CTE, Select, Subquery, bindparam, column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.models import Product

MAX_WORDS = 10  # a query's words beyond these are ignored
MIN_CORRECTED = 4  # shorter words are never corrected (too many neighbours)
TWO_EDITS_FROM = 8  # words this long may be two edits away
MAX_CORRECTIONS = 10  # the closest corrections a word stands for
MAX_EXPANDED = 20  # a word that begins at most these indexed words is searched as those words

_WORD = re.compile(r"[^\W_]+")


# PostgreSQL: the weighted text-search vector (name and sku weigh A, the description D), stored in
# ``products.search_vector`` (a generated column whose expression migration 0004 defines) and indexed there
# for every product, archived ones too (a query keeps to the listed ones). ASCII punctuation is read as
# spaces before the parser sees the text, which then finds words and numbers only (as the query's words are
# split here): it would read "<script>...</script>" as a markup tag and drop it, and "help@mart.example" or
# "/usr/share" as one token of its own kind.
_PG_VECTOR = literal_column("products.search_vector")
_PG_QUERY = func.to_tsquery(literal_column("'simple'::regconfig"), bindparam("tsquery"))
PG_MATCH = _PG_VECTOR.op("@@")(_PG_QUERY)

# SQLite: the FTS5 table (its rowid is the product's), the match and the score (bm25: lower is better).
_FTS = table("products_fts", column("rowid"))
_SQLITE_MATCH = text("products_fts MATCH :fts_query")
_SQLITE_SCORE = literal_column("bm25(products_fts, 10.0, 10.0, 1.0)")

# The bound parameter of :func:`window`'s query: how many matches it ranks, sorts and pages (it reads one
# more, so that the total says whether more matched).
WINDOW = "_search_window"


def words(q: str) -> list[str]:
    """The words of a query, lower-cased, at most :data:`MAX_WORDS`."""
    return _WORD.findall(q.lower())[:MAX_WORDS]


def _upper_bound(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix`` (code point order)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def corrections(word: str, candidates: list[str]) -> list[str]:
    """The candidates close enough to stand for a misspelt ``word`` (closest first)."""
    if len(word) < MIN_CORRECTED:
        return []
    cutoff = 2 if len(word) >= TWO_EDITS_FROM else 1
    scored = []
    for candidate in candidates:
        if candidate[:1] != word[:1]:
            continue
        distance = DamerauLevenshtein.distance(word, candidate, score_cutoff=cutoff)
        if distance <= cutoff:
            scored.append((distance, candidate))
    return [candidate for _, candidate in sorted(scored)[:MAX_CORRECTIONS]]


@dataclass(frozen=True)
class Match:
    """One query word: a prefix, or the indexed words it stands for (those it begins, or its
    corrections)."""

    prefix: str | None
    alternatives: tuple[str, ...] = ()


# The indexed words a prefix begins, the first ``:n`` of them (both tables hold each word once, in code
# point order: the ranges below are prefixes).
_PG_BEGUN = text("SELECT term FROM product_terms WHERE term >= :lo AND term < :hi ORDER BY term LIMIT :n")
_PG_CANDIDATES = text("SELECT term FROM product_terms WHERE term % :word AND term >= :lo AND term < :hi")
_SQLITE_BEGUN = text("SELECT term FROM products_fts_terms WHERE term >= :lo AND term < :hi LIMIT :n")
_SQLITE_CANDIDATES = text("SELECT term FROM products_fts_terms WHERE term >= :lo AND term < :hi")


async def _prefix(session: AsyncSession | RowReader, word: str, *, postgres: bool) -> Match | None:
    """``word`` as the indexed words it begins when there are at most :data:`MAX_EXPANDED` of them, else
    as a prefix; None when it begins none.

    The same matches either way; the words are cheaper to find. SQLite's FTS5 reads an exact word's
    matches newest first and stops at the query's limit, where a prefix query first merges the matches of
    every word it begins. PostgreSQL's planner estimates an exact word from the column's statistics (a
    word most products have walks the newest-first listing index, a rare one reads the text index); a
    prefix it estimates from them only when they hold 100 frequent words or more, else at a fixed 2 %.
    """
    bounds = {"lo": word, "hi": _upper_bound(word), "n": MAX_EXPANDED + 1}
    begun = list(await session.scalars(_PG_BEGUN if postgres else _SQLITE_BEGUN, bounds))
    if not begun:
        return None
    return Match(prefix=word) if len(begun) > MAX_EXPANDED else Match(prefix=None, alternatives=tuple(begun))


async def _match(session: AsyncSession | RowReader, word: str, *, postgres: bool) -> Match | None:
    found = await _prefix(session, word, postgres=postgres)
    if found is not None:
        return found
    if len(word) < MIN_CORRECTED:
        return None
    letter = {"lo": word[0], "hi": _upper_bound(word[0])}
    if postgres:
        candidates = list(await session.scalars(_PG_CANDIDATES, {"word": word, **letter}))
    else:
        candidates = list(await session.scalars(_SQLITE_CANDIDATES, letter))
    corrected = corrections(word, candidates)
    return Match(prefix=None, alternatives=tuple(corrected)) if corrected else None


async def plan(session: AsyncSession | RowReader, query_words: list[str], *, postgres: bool) -> str | None:
    """The engine's query (a ``tsquery`` on PostgreSQL, an FTS5 query on SQLite) for ``query_words``, or
    None when one of them matches no indexed word (then no product matches)."""
    parts = []
    for word in query_words:
        match = await _match(session, word, postgres=postgres)
        if match is None:
            return None
        parts.append(_pg_part(match) if postgres else _sqlite_part(match))
    return (" & " if postgres else " AND ").join(parts)


def _pg_part(match: Match) -> str:
    if match.prefix is not None:
        return f"'{match.prefix}':*"
    return "(" + " | ".join(f"'{word}'" for word in match.alternatives) + ")"


def _sqlite_part(match: Match) -> str:
    if match.prefix is not None:
        return f'"{match.prefix}"*'
    return "(" + " OR ".join(f'"{word}"' for word in match.alternatives) + ")"


def window(query: Select[Any], *, postgres: bool) -> tuple[Subquery, CTE]:
    """The products a text search considers: ``query`` (a select of the products' sort keys with the
    request's other filters; the page's rows are read whole afterwards, ``mart_common.deps.paged_then_read``)
    narrowed to the products matching the bound engine query (``:tsquery`` on PostgreSQL, ``:fts_query`` on
    SQLite), the newest first, at most ``:_search_window`` of them.

    Returns ``(newest, matches)``: ``newest`` the window, to rank, sort and page (on SQLite with the
    ``score`` of :func:`relevance`); ``matches`` the window and one match more when there is one, to count
    (its count above the window says that more products matched).

    PostgreSQL reads the newest matches either by walking the listing's ``created_at`` index, checking the
    match on each row (it stops early when most products match), or from the text index's matches then
    the newest of them (when few match): the planner's choice, from the statistics ANALYZE gathers on the
    ``search_vector`` column (:func:`_prefix`). SQLite walks the FTS5 matches in descending rowid (the
    order products were added) and stops at the limit; bm25 is computed for those rows only.
    """
    if postgres:
        matches = (
            query.add_columns(_PG_VECTOR.label("search_vector"))
            .where(PG_MATCH)
            .order_by(Product.created_at.desc(), Product.id.desc())
        )
    else:  # the FTS5 table holds only listed products
        listed = _FTS.join(Product.__table__, literal_column("products.rowid") == _FTS.c.rowid)
        matches = (
            query.add_columns(_FTS.c.rowid.label("seq"), _SQLITE_SCORE.label("score"))
            .select_from(listed)
            .where(_SQLITE_MATCH)
            .order_by(_FTS.c.rowid.desc())
        )
    # Counted and ranked from one reading of the matches.
    probe = matches.limit(bindparam(WINDOW) + 1).cte("matches").prefix_with("MATERIALIZED")
    newest_first = (probe.c.created_at.desc(), probe.c.id.desc()) if postgres else (probe.c.seq.desc(),)
    newest = select(probe).order_by(*newest_first).limit(bindparam(WINDOW)).subquery("newest")
    return newest, probe


def relevance(newest: Subquery, *, postgres: bool) -> Any:
    """Best match first among :func:`window`'s ``newest`` (for ``order_by``)."""
    if postgres:  # the stored vector: nothing is computed per row but the rank
        return func.ts_rank(newest.c.search_vector, _PG_QUERY).desc()
    return newest.c.score


def param_name(*, postgres: bool) -> str:
    """The bound parameter :func:`plan`'s query goes in."""
    return "tsquery" if postgres else "fts_query"
