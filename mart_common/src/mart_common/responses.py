"""JSON responses serialised once, with HTTP validators.

A route that answers with :func:`json_response` skips FastAPI's second pass over its return value (the
``response_model`` still documents the shape in OpenAPI): the body is validated and serialised by one
pydantic ``TypeAdapter`` straight from the database rows. It carries a strong ``ETag`` (a hash of the
body) and answers ``304 Not Modified`` to a matching ``If-None-Match``, so clients and caches that
revalidate (``Cache-Control: no-cache``) transfer nothing when the catalog did not change
(docs/adr/0021-catalog-reads.md). :class:`ResponseCache` keeps serialised answers in the process
for as long as a :class:`~mart_common.changes.ChangeFeed` says the data behind them did not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request, Response
from pydantic import TypeAdapter

if TYPE_CHECKING:
    from mart_common.changes import ChangeFeed

T = TypeVar("T")

PUBLIC = "public, no-cache"
"""Anyone (a CDN, Kong's proxy cache) may store it, but must revalidate before reusing it."""
PRIVATE = "private, no-store"
"""Per-user or admin-only answers: never stored by shared caches."""


def json_response(
    request: Request, adapter: TypeAdapter[T], value: Any, *, cache: str = PUBLIC, status_code: int = 200
) -> Response:
    """``value`` validated and serialised by ``adapter``, with ``ETag``/``Cache-Control``; 304 when the
    request's ``If-None-Match`` names the same body."""
    body, etag = serialise(adapter, value)
    return answer(request, body, etag, cache=cache, status_code=status_code)


def serialise(adapter: TypeAdapter[T], value: Any) -> tuple[bytes, str]:
    """The JSON body of ``value`` (validated by ``adapter``) and its strong ETag."""
    body = adapter.dump_json(adapter.validate_python(value))
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
        adapter: TypeAdapter[T],
        load: Callable[[], Awaitable[Any]],
        *,
        cache: str = PUBLIC,
    ) -> Response:
        """The cached answer for ``key``, or ``load()`` serialised by ``adapter`` (and kept).

        A request that says ``Cache-Control: no-cache`` is answered from the database (and refreshes the
        entry): what a client that distrusts every cache on the way asks for.
        """
        version = self.feed.version
        live = self.feed.live and "no-cache" not in request.headers.get("cache-control", "")
        if live:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                return answer(request, entry[1], entry[2], cache=cache)
        body, etag = serialise(adapter, await load())
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
