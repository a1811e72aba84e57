"""The product service's definition: its routes and migrations (it consumes no events)."""

from __future__ import annotations

from mart_common.service import ServiceDefinition

from product_service.routes import categories, products, reviews
from product_service.settings import ProductSettings


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
        openapi_tags=[
            {"name": "products", "description": "Search, read, create, update, archive."},
            {"name": "categories", "description": "Product categories."},
            {"name": "reviews", "description": "Customer reviews and ratings."},
        ],
    )
