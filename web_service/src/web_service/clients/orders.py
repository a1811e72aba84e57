"""order-service: placing, reading, cancelling and fulfilling orders (docs/api.md, "order-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class OrdersClient(ServiceClient):
    service = "order-service"

    async def place(
        self, *, items: list[dict[str, Any]], shipping_address: dict[str, str], idempotency_key: str
    ) -> dict[str, Any]:
        body = {"items": items, "shipping_address": shipping_address}
        return await self._send("POST", "/orders", body, headers={"idempotency-key": idempotency_key})

    async def list(
        self, *, status: str | None = None, user_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        return await self._get("/orders", status=status, user_id=user_id, limit=limit, offset=offset)

    async def get(self, order_id: str) -> dict[str, Any]:
        return await self._get(f"/orders/{order_id}")

    async def cancel(self, order_id: str) -> dict[str, Any]:
        return await self._send("POST", f"/orders/{order_id}/cancel")

    async def ship(self, order_id: str) -> dict[str, Any]:
        return await self._send("POST", f"/orders/{order_id}/ship")

    async def deliver(self, order_id: str) -> dict[str, Any]:
        return await self._send("POST", f"/orders/{order_id}/deliver")
