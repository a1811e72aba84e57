"""Settings of the user service (environment prefix ``MART_``)."""

from __future__ import annotations

from mart_common.settings import ServiceSettings
from pydantic import Field


class UserSettings(ServiceSettings):
    service_name: str = "user-service"

    # RS256 signing key (PEM). Unset: a key pair is generated once under <data_dir>/keys/ and kept.
    jwt_private_key_pem: str | None = None
    # Key rotation: the previous signing key (private or public PEM). Its public half stays in the JWKS
    # and keeps verifying the tokens it signed; remove it once the longest token lifetime (refresh
    # tokens: refresh_token_ttl_s) has passed since the rotation. Unset: <data_dir>/keys/
    # user-service-jwt.previous.pem if present (`./mart keys rotate|retire`).
    jwt_previous_key_pem: str | None = None
    access_token_ttl_s: int = Field(default=15 * 60, ge=30)
    refresh_token_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)

    # The admin account created at start if absent; no password: one is generated and logged once.
    admin_email: str = "admin@example.com"
    admin_password: str | None = None
    admin_full_name: str = "Mart Admin"

    # Argon2 cost. None = pwdlib's defaults (production). Tests lower them to stay fast (see docs).
    argon2_time_cost: int | None = None
    argon2_memory_cost: int | None = None
    argon2_parallelism: int | None = None

    # Login throttling (in the database, shared by every replica): failures within the window before 429.
    login_window_s: float = 300.0
    login_max_failures_per_account: int = 5
    login_max_failures_per_client: int = 20
