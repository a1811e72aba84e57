"""Settings of the product service (environment prefix ``MART_``)."""

from __future__ import annotations

from mart_common.settings import ServiceSettings


class ProductSettings(ServiceSettings):
    service_name: str = "product-service"
