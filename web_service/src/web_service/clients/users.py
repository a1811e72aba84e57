"""user-service: accounts, sign-in, users (docs/api.md, "user-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class UsersClient(ServiceClient):
    service = "user-service"

    async def register(self, *, email: str, password: str, full_name: str) -> dict[str, Any]:
        body = {"email": email, "password": password, "full_name": full_name}
        return await self._send("POST", "/auth/register", body, auth=False)

    async def login(self, *, email: str, password: str) -> dict[str, Any]:
        data = {"username": email, "password": password}
        return await self._caller.json(self.service, "POST", "/auth/login", data=data, auth=False)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._send("POST", "/auth/refresh", {"refresh_token": refresh_token}, auth=False)

    async def logout(self, refresh_token: str) -> None:
        await self._send("POST", "/auth/logout", {"refresh_token": refresh_token}, auth=False)

    async def me(self) -> dict[str, Any]:
        return await self._get("/users/me")

    async def update_me(self, **fields: Any) -> dict[str, Any]:
        return await self._send("PATCH", "/users/me", fields)

    async def list(self, *, q: str | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return await self._get("/users", q=q, limit=limit, offset=offset)

    async def get(self, user_id: str) -> dict[str, Any]:
        return await self._get(f"/users/{user_id}")

    async def update(self, user_id: str, **fields: Any) -> dict[str, Any]:
        return await self._send("PATCH", f"/users/{user_id}", fields)
