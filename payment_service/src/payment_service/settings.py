"""Payment-service settings: the provider and the Stripe credentials (no ``MART_`` prefix, as Stripe
names them)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from mart_common.settings import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict


class PaymentSettings(ServiceSettings):
    model_config = SettingsConfigDict(populate_by_name=True)

    service_name: str = "payment-service"
    payment_provider: Literal["fake", "stripe"] = "fake"
    stripe_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_API_KEY", "stripe_api_key")
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret")
    )
    # Stripe's own default: a signed event older than this is refused (replay protection).
    webhook_tolerance_s: int = 300
    stripe_max_network_retries: int = 2
    # Where the Stripe SDK sends its requests (None: api.stripe.com); e.g. stripe-mock in development.
    stripe_api_base: str | None = None
    # One provider request may take this long before it counts as a (transient) failure.
    stripe_timeout_s: float = Field(default=30.0, gt=0)

    # Provider calls run outside transactions and are retried with exponential backoff
    # (payment_service.provider_calls): intent creation gives up after `provider_max_attempts` transient
    # failures (the payment FAILS, the order is cancelled); a refund is retried until it goes through.
    provider_retry_base_s: float = Field(default=1.0, gt=0)
    provider_retry_max_s: float = Field(default=300.0, gt=0)
    provider_max_attempts: int = Field(default=6, ge=1)
    provider_poll_interval_s: float = Field(default=5.0, gt=0)

    def resolved_webhook_secret(self) -> str:
        """``STRIPE_WEBHOOK_SECRET``; with the fake provider and none set, one generated once under
        ``<data_dir>/keys/`` (mode 0600) so simulated events are signed like Stripe's."""
        if self.stripe_webhook_secret is not None and self.stripe_webhook_secret.get_secret_value():
            return self.stripe_webhook_secret.get_secret_value()
        if self.payment_provider == "stripe":
            raise ValueError("STRIPE_WEBHOOK_SECRET is required with MART_PAYMENT_PROVIDER=stripe")
        return _load_or_create_secret(self.data_dir / "keys" / "payment_webhook_secret")


def _load_or_create_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = "whsec_" + secrets.token_hex(24)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
