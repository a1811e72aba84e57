"""JSON responses serialised once, with HTTP validators.

A route that answers with :func:`json_response` skips FastAPI's second pass over its return value (the
``response_model`` still documents the shape in OpenAPI): the body is validated and serialised by one
pydantic ``TypeAdapter`` straight from the database rows. It carries a strong ``ETag`` (a hash of the
body) and answers ``304 Not Modified`` to a matching ``If-None-Match``, so clients and caches that
revalidate (``Cache-Control: no-cache``) transfer nothing when the catalog did not change
(docs/performance.md, docs/decisions.md).
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic import TypeAdapter

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
    body = adapter.dump_json(adapter.validate_python(value))
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": cache}
    if status_code == 200 and _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
