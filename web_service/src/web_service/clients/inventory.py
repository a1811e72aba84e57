"""inventory-service: stock levels, adjustments and their audit trail (docs/api.md, "inventory-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class InventoryClient(ServiceClient):
    service = "inventory-service"

    async def stock(self, product_id: str) -> dict[str, Any]:
        return await self._get(f"/stock/{product_id}")

    async def stock_list(
        self, *, below: int | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        return await self._get("/stock", below=below, limit=limit, offset=offset)

    async def adjust(self, product_id: str, *, delta: int, reason: str) -> dict[str, Any]:
        return await self._send(
            "POST", f"/stock/{product_id}/adjustments", {"delta": delta, "reason": reason}
        )

    async def adjustments(self, product_id: str, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return await self._get(f"/stock/{product_id}/adjustments", limit=limit, offset=offset)
