"""A thin HTTP client over the services' public APIs (used by the seed, the CLI and the e2e suite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from mart_common.polling import wait_until

from mart_cli.services import Endpoints

T = TypeVar("T")


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:500]}"
        )


def check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in (expected or (200,)):
        raise ApiError(response)
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, ep: Endpoints, email: str, password: str) -> str:
    """An access token for ``email`` (OAuth2 password form)."""
    response = await client.post(ep.user("/auth/login"), data={"username": email, "password": password})
    return check(response).json()["access_token"]


async def list_all(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> list[Any]:
    """Every item of a paginated list endpoint (``{items, total, limit, offset}``)."""
    items: list[Any] = []
    offset = 0
    while True:
        sep = "&" if "?" in url else "?"
        page = check(await client.get(f"{url}{sep}limit=100&offset={offset}", headers=headers)).json()
        items.extend(page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return items


async def wait_for(
    check_fn: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "",
) -> T:
    """Poll ``check_fn`` until it returns something truthy (raises ``TimeoutError``: a ``PollTimeout``)."""
    return await wait_until(
        check_fn,
        timeout=timeout,
        interval=interval,
        retry_on=(httpx.TransportError, ApiError, AssertionError),
        what=what,
    )
