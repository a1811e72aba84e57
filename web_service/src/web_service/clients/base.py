"""What every typed client shares: a call on behalf of the browser behind the current request."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol


class Caller(Protocol):
    """Makes one API call as the current browser (its token, refreshed when needed)."""

    async def json(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any: ...


class ServiceClient:
    """A typed client of one service's public API (docs/api.md); the only place that knows its paths."""

    service: ClassVar[str]

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    async def _get(self, path: str, **params: Any) -> Any:
        return await self._caller.json(self.service, "GET", path, params=params)

    async def _send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self._caller.json(self.service, method, path, json=body, **kwargs)
