"""The product service's definition: its routes and migrations (it consumes no events)."""

from __future__ import annotations

from mart_common.changes import ChangeFeed
from mart_common.responses import ResponseCache
from mart_common.service import ServiceDefinition, ServiceRuntime

from product_service.models import Category, Product, Review
from product_service.routes import categories, products, reviews
from product_service.settings import ProductSettings


async def start_catalog_cache(runtime: ServiceRuntime) -> None:
    # Public catalog answers are kept until a write to the catalog commits, in any replica.
    feed = ChangeFeed(runtime.db, "mart_catalog", [Product.__table__, Category.__table__, Review.__table__])
    await feed.start()
    runtime.extras["catalog_cache"] = ResponseCache(feed)


async def stop_catalog_cache(runtime: ServiceRuntime) -> None:
    cache = runtime.extras.pop("catalog_cache", None)
    if cache is not None:
        await cache.feed.stop()


def definition(settings: ProductSettings) -> ServiceDefinition:
    return ServiceDefinition(
        name="product-service",
        title="Online Mart — product service",
        description=(
            "The catalog. Reads are public; writes need an admin access token, reviews a signed-in user. "
            "Every product change is published on `mart.products.v1` as a full snapshot with a version."
        ),
        routers=[products.router, categories.router, reviews.router],
        migrations_package="product_service.migrations",
        on_startup=[start_catalog_cache],
        on_shutdown=[stop_catalog_cache],
        openapi_tags=[
            {"name": "products", "description": "Search, read, create, update, archive."},
            {"name": "categories", "description": "Product categories."},
            {"name": "reviews", "description": "Customer reviews and ratings."},
        ],
    )
