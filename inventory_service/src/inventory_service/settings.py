"""Inventory-service settings (environment prefix ``MART_``)."""

from __future__ import annotations

from mart_common.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    service_name: str = "inventory-service"
    # StockLow is published when a product's available stock falls under this (once per crossing).
    low_stock_threshold: int = 5
    # A reservation not committed or released within this time is released by the expiry sweep. It is a
    # backstop behind the order service's payment window (15 min), so it must be longer than that window.
    reservation_ttl_s: float = 1800.0
    reservation_sweep_interval_s: float = 30.0
