"""product-service: the catalog, categories, reviews (docs/api.md, "product-service")."""

from __future__ import annotations

from typing import Any

from web_service.clients.base import ServiceClient


class ProductsClient(ServiceClient):
    service = "product-service"

    async def search(self, **params: Any) -> dict[str, Any]:
        """``q, category_id, min_price_cents, max_price_cents, sort, limit, offset``: the API's own."""
        return await self._get("/products", **params)

    async def get(self, product_id: str, *, include_archived: bool = False) -> dict[str, Any]:
        return await self._get(f"/products/{product_id}", include_archived=include_archived or None)

    async def create(self, **fields: Any) -> dict[str, Any]:
        return await self._send("POST", "/products", fields)

    async def update(self, product_id: str, **fields: Any) -> dict[str, Any]:
        return await self._send("PATCH", f"/products/{product_id}", fields)

    async def archive(self, product_id: str) -> None:
        await self._send("DELETE", f"/products/{product_id}")

    async def categories(self, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return await self._get("/categories", limit=limit, offset=offset)

    async def create_category(self, name: str) -> dict[str, Any]:
        return await self._send("POST", "/categories", {"name": name})

    async def reviews(self, product_id: str, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return await self._get(f"/products/{product_id}/reviews", limit=limit, offset=offset)

    async def review(self, product_id: str, *, rating: int, comment: str) -> dict[str, Any]:
        return await self._send(
            "POST", f"/products/{product_id}/reviews", {"rating": rating, "comment": comment}
        )
