"""notification-service: in-app notifications, preferences, deliveries (docs/api.md,
"notification-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class NotificationsClient(ServiceClient):
    service = "notification-service"

    async def list(self, *, unread: bool | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return await self._get("/notifications", unread=unread, limit=limit, offset=offset)

    async def unread_count(self) -> int:
        return int((await self.list(unread=True, limit=1))["total"])

    async def mark_read(self, notification_id: str) -> None:
        await self._send("POST", f"/notifications/{notification_id}/read")

    async def preferences(self) -> dict[str, Any]:
        return await self._get("/preferences")

    async def set_preferences(self, *, email: bool, sms: bool) -> dict[str, Any]:
        return await self._send("PUT", "/preferences", {"email": email, "sms": sms})

    async def deliveries(
        self, *, status: str | None = None, user_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        return await self._get("/deliveries", status=status, user_id=user_id, limit=limit, offset=offset)

    async def retry(self, delivery_id: str) -> dict[str, Any]:
        return await self._send("POST", f"/deliveries/{delivery_id}/retry")
