"""payment-service: an order's payments and the fake provider's outcomes (docs/api.md, "payment-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class PaymentsClient(ServiceClient):
    service = "payment-service"

    async def for_order(self, order_id: str) -> list[dict[str, Any]]:
        return (await self._get("/payments", order_id=order_id, limit=100))["items"]

    async def simulate(self, payment_id: str, outcome: str) -> dict[str, Any]:
        return await self._send("POST", f"/payments/{payment_id}/simulate", {"outcome": outcome})
