"""Settings of the product service (environment prefix ``MART_``)."""

from __future__ import annotations

from mart_common.settings import ServiceSettings
from pydantic import Field


class ProductSettings(ServiceSettings):
    service_name: str = "product-service"
    # A text search ranks, sorts and counts at most this many of its newest matches
    # (docs/adr/0056-search-window.md).
    search_window: int = Field(default=1000, ge=100, le=100_000)
