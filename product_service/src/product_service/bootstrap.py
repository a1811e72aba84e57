"""The product service's definition: its routes, migrations and context (the catalog cache); it consumes
no events (wiring only: the use-cases are in services.py)."""

from __future__ import annotations

from mart_common.service import ServiceDefinition

from product_service.context import open_context
from product_service.handlers import HANDLERS
from product_service.routes import categories, products, reviews
from product_service.settings import ProductSettings


def definition(settings: ProductSettings) -> ServiceDefinition:
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — product service",
        description=(
            "The catalog. Reads are public; writes need an admin access token, reviews a signed-in user. "
            "Every product change is published on `mart.products.v1` as a full snapshot with a version."
        ),
        routers=[products.router, categories.router, reviews.router],
        migrations_package="product_service.migrations",
        handlers=HANDLERS,
        context=open_context,
        openapi_tags=[
            {"name": "products", "description": "Search, read, create, update, archive."},
            {"name": "categories", "description": "Product categories."},
            {"name": "reviews", "description": "Customer reviews and ratings."},
        ],
    )
