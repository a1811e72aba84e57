"""Order-service settings (environment prefix ``MART_``)."""

from __future__ import annotations

from mart_common.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    service_name: str = "order-service"
    # An order not paid within this window after it was placed/reserved is cancelled.
    payment_window_s: float = 900.0
    # How often the scheduled check looks for orders whose payment window has passed.
    payment_check_interval_s: float = 10.0
