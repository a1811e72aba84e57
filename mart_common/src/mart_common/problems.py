"""RFC 9457 problem details: one error shape for every service.

Every error leaves the service as ``application/problem+json`` with a stable ``type`` URI, ``title``,
``status`` and ``detail``. Domain code raises :class:`Problem` (or a subclass); validation and HTTP errors
from FastAPI/Starlette are converted; anything unexpected becomes a logged 500 without internals.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://online-mart.dev/problems/"

_DEFAULT_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemDetails(BaseModel):
    """The documented shape of every error response."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class Problem(Exception):
    """An error that is the client's to fix (or a known condition), rendered as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.detail = detail
        self.slug = slug or _DEFAULT_SLUGS.get(status, "error")
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers
        self.extensions = extensions


class NotFound(Problem):
    def __init__(self, detail: str = "The resource does not exist.", **kw: Any) -> None:
        super().__init__(404, detail, **kw)


class Conflict(Problem):
    def __init__(self, detail: str, *, slug: str = "conflict", **kw: Any) -> None:
        super().__init__(409, detail, slug=slug, **kw)


class Unprocessable(Problem):
    def __init__(self, detail: str, *, slug: str = "validation-error", **kw: Any) -> None:
        super().__init__(422, detail, slug=slug, **kw)


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + (slug or _DEFAULT_SLUGS.get(status, "error")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _json_safe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    safe = []
    for err in errors:
        safe.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return safe


def install_problem_handlers(app: FastAPI) -> None:
    """Register the problem+json exception handlers on ``app``."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _json_safe(list(exc.errors()))
        first = errors[0] if errors else None
        detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first else "The request is not valid."
        return problem_response(422, detail, instance=request.url.path, errors=errors)

    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        refused = _value_refused(exc)
        if refused is not None:
            return _value_refused_response(request, refused)
        if isinstance(exc, PoolTimeout):
            # Every connection of the process's fixed pool stayed busy for MART_DB_POOL_TIMEOUT_S: the
            # process is overloaded, not broken (docs/scaling.md, "Connections").
            log.warning("database_pool_exhausted", path=request.url.path)
            busy = "The service is busy: all its database connections are in use; retry later."
            return _retry_later(request, busy, slug="database-busy", after_s=1)
        if not _database_unavailable(exc):
            raise exc  # a real error: the generic handler below logs it and answers 500
        # The service's database is away (restart, failover, outage): the request may be retried.
        log.warning("database_unavailable", path=request.url.path, error=str(exc).splitlines()[0][:300])
        away = "The service's database is temporarily unavailable; retry later."
        return _retry_later(request, away, slug="database-unavailable", after_s=2)

    for exc_class in (DBAPIError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(exc_class, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        refused = _value_refused(exc)
        if refused is not None:
            return _value_refused_response(request, refused)
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(500, "An unexpected error occurred.", instance=request.url.path)


def _retry_later(request: Request, detail: str, *, slug: str, after_s: int) -> JSONResponse:
    """503 problem+json saying when to retry (``Retry-After``)."""
    headers = {"Retry-After": str(after_s)}
    return problem_response(503, detail, slug=slug, instance=request.url.path, headers=headers)


def _value_refused(exc: BaseException) -> str | None:
    """Why the database (or its driver) refused a value the client sent, or None for any other error.

    PostgreSQL refuses what SQLite stores (docs/reliability.md, "Bad input"): a NUL character in text
    (SQLSTATE 22021), integers out of range (22003, or asyncpg's client-side ``DataError``), any other data
    exception (SQLSTATE class 22); both refuse text with a lone surrogate (not encodable as UTF-8) and
    SQLite integers beyond 64 bits (``OverflowError``). The client's input is at fault: 422, not 500.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, UnicodeEncodeError):
            return "Text contains a character that is not valid Unicode (a lone surrogate)."
        if isinstance(cause, OverflowError):
            return "A number is out of the range that can be stored."
        code = str(getattr(cause, "sqlstate", "") or "")
        kind = type(cause)
        asyncpg_data_error = kind.__name__ == "DataError" and kind.__module__.startswith("asyncpg")
        if code.startswith("22") or asyncpg_data_error:
            first = (str(cause).splitlines() or [""])[0][:200]
            return f"A value cannot be stored: {first.encode('ascii', 'backslashreplace').decode()}"
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__
    return None


def _value_refused_response(request: Request, detail: str) -> JSONResponse:
    log.info("value_refused", path=request.url.path, detail=detail)
    return problem_response(422, detail, slug="value-not-storable", instance=request.url.path)


def _database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached (not a bug in the request or the code)."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        cause: BaseException | None = exc.orig
        while cause is not None:
            if isinstance(cause, ConnectionError | TimeoutError | OSError):
                return True
            # asyncpg: "database is not accepting connections" (55000), admin/crash shutdown (57P0x),
            # cannot connect now (57P03), connection exceptions (08xxx).
            code = str(getattr(cause, "sqlstate", "") or "")
            if code == "55000" or code.startswith(("57P", "08")):
                return True
            cause = cause.__cause__
    return False


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the given error statuses as problem+json."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": ProblemDetails,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
    return out


_SCHEMA_REF = "#/components/schemas/ProblemDetails"
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what every operation can answer besides its success (in place).

    Every error response is ``application/problem+json`` with the ``ProblemDetails`` schema (also the 422
    FastAPI documents as ``HTTPValidationError``, which the handlers above never send), and each operation
    lists the errors the shared layers can give it: 422 (parameters or body invalid), 400 (body not
    parseable) and 413 (body over ``MART_MAX_BODY_BYTES``) for a body, 404 for a path parameter, 401 and
    403 for a bearer-protected operation, 503 (database unavailable, docs/reliability.md) for all but
    liveness. Clients and schemathesis' status-code and schema conformance checks rely on it.
    """
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ProblemDetails", ProblemDetails.model_json_schema())
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMA_REF}}}
    for path, item in openapi.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            params = operation.get("parameters", [])
            statuses: set[int] = set()
            if path != "/health":
                statuses.add(503)
            if operation.get("requestBody"):
                statuses |= {400, 413, 422}
            if params:
                statuses.add(422)
            if any(p.get("in") == "path" for p in params):
                statuses.add(404)
            if operation.get("security"):
                statuses |= {401, 403}
            for status in statuses:
                responses.setdefault(str(status), {"description": _TITLES.get(status, "Error")})
            for status, response in responses.items():
                if str(status)[:1] in {"4", "5"}:
                    response["content"] = dict(problem_content)
    return openapi
