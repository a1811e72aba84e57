"""JSON responses serialised once, with HTTP validators.

A route that answers with :func:`json_response` skips FastAPI's second pass over its return value (the
``response_model`` still documents the shape in OpenAPI): the body is written by a :class:`RowJson`
straight from the database rows, in the shape of the response model, without validating the rows again
(the database's types and constraints already hold them to the schema). It carries a strong ``ETag`` (a
hash of the body) and answers ``304 Not Modified`` to a matching ``If-None-Match``, so clients and caches
that revalidate (``Cache-Control: no-cache``) transfer nothing when the catalog did not change
(docs/adr/0021-catalog-reads.md). :class:`ResponseCache` keeps serialised answers in the process
for as long as a :class:`~mart_common.changes.ChangeFeed` says the data behind them did not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Request, Response
from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from mart_common.changes import ChangeFeed


PUBLIC = "public, no-cache"
"""Anyone (a CDN, Kong's proxy cache) may store it, but must revalidate before reusing it."""
PRIVATE = "private, no-store"
"""Per-user or admin-only answers: never stored by shared caches."""


class RowJson:
    """The JSON of database rows in the shape of a response model, written without validating them again.

    ``RowJson(ProductPublic)`` writes one row (a SQLAlchemy ``Row`` or a mapping of the model's fields);
    ``RowJson(ProductPublic, page=True)`` a page ``{"items": [rows], "total", "limit", "offset",
    "total_exact"}``
    (:meth:`mart_common.deps.Page.wrap`). Columns beyond the model's fields are left out. The rows come from
    the service's own tables, whose types and constraints are the schema's: pydantic's serializer writes
    them as the model would (the same bytes as validating first, in a third of the time), and warns
    (``PydanticSerializationUnexpectedValue``) about a value of another type. A naive datetime (SQLite)
    is written as UTC, as :data:`mart_common.clock.UtcDatetime` would.

    The model may not rename fields, compute fields or serialise them with its own methods: those live on
    the model class, which this does not build.
    """

    def __init__(self, model: type[BaseModel], *, page: bool = False) -> None:
        fields = model.model_fields
        if (
            model.model_computed_fields
            or model.__pydantic_decorators__.field_serializers
            or model.__pydantic_decorators__.model_serializers
            or any(f.alias or f.serialization_alias for f in fields.values())
        ):
            raise TypeError(f"{model.__name__}: RowJson writes plain fields only")
        row = TypedDict(  # type: ignore[misc]  # the fields are the model's, known at run time
            f"{model.__name__}Row",
            {
                name: Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation
                for name, f in fields.items()
            },
        )
        self._datetimes = tuple(name for name, f in fields.items() if _may_be_datetime(f.annotation))
        self._page = page
        if page:
            shape = TypedDict(  # type: ignore[misc]  # noqa: UP013 - its item type is built at run time
                f"{model.__name__}Page",
                {"items": list[row], "total": int, "limit": int, "offset": int, "total_exact": bool},
            )
            self._adapter: TypeAdapter[Any] = TypeAdapter(shape)
        else:
            self._adapter = TypeAdapter(row)

    def dump_json(self, value: Any) -> bytes:
        """``value`` (a row, or a page of rows with ``page=True``) as JSON."""
        if self._page:
            value = {**value, "items": self._dicts(value["items"])}
        else:
            (value,) = self._dicts([value])
        return self._adapter.dump_json(value)

    def _dicts(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if not rows:
            return []
        keys = getattr(rows[0], "_fields", None)
        if keys is not None:  # SQLAlchemy rows of one statement share their keys
            dicts = [dict(zip(keys, row, strict=True)) for row in rows]
        else:
            dicts = [dict(row) if isinstance(row, Mapping) else dict(vars(row)) for row in rows]
        # SQLite hands back naive datetimes (UTC), PostgreSQL aware ones
        for name in self._datetimes:
            for fields in dicts:
                if _is_naive(fields.get(name)):
                    fields[name] = fields[name].replace(tzinfo=UTC)
        return dicts


def _is_naive(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is None


def _may_be_datetime(annotation: Any) -> bool:
    return annotation is datetime or datetime in getattr(annotation, "__args__", ())


def json_response(
    request: Request, rows: RowJson, value: Any, *, cache: str = PUBLIC, status_code: int = 200
) -> Response:
    """``value`` written by ``rows``, with ``ETag``/``Cache-Control``; 304 when the request's
    ``If-None-Match`` names the same body."""
    body, etag = serialise(rows, value)
    return answer(request, body, etag, cache=cache, status_code=status_code)


def serialise(rows: RowJson, value: Any) -> tuple[bytes, str]:
    """The JSON body of ``value`` (written by ``rows``) and its strong ETag."""
    body = rows.dump_json(value)
    return body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def answer(
    request: Request, body: bytes, etag: str, *, cache: str = PUBLIC, status_code: int = 200
) -> Response:
    """The response for a serialised body: 304 when ``If-None-Match`` names ``etag``."""
    headers = {"ETag": etag, "Cache-Control": cache}
    if status_code == 200 and _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


class ResponseCache:
    """Serialised answers about data a :class:`~mart_common.changes.ChangeFeed` watches, each kept while
    the feed's version has not moved since it was read (so never older than the last known commit)."""

    def __init__(self, feed: ChangeFeed, *, max_entries: int = 1024) -> None:
        self.feed = feed
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[int, bytes, str]] = {}

    async def json(
        self,
        request: Request,
        key: Hashable,
        rows: RowJson,
        load: Callable[[], Awaitable[Any]],
        *,
        cache: str = PUBLIC,
    ) -> Response:
        """The cached answer for ``key``, or ``load()`` written by ``rows`` (and kept).

        A request that says ``Cache-Control: no-cache`` is answered from the database (and refreshes the
        entry): what a client that distrusts every cache on the way asks for.
        """
        version = self.feed.version
        live = self.feed.live and "no-cache" not in request.headers.get("cache-control", "")
        if live:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                return answer(request, entry[1], entry[2], cache=cache)
        body, etag = serialise(rows, await load())
        if self.feed.live:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            # Stamped with the version read BEFORE loading: a commit meanwhile makes it stale at once.
            self._entries[key] = (version, body, etag)
        return answer(request, body, etag, cache=cache)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
