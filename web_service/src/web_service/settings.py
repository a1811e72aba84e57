"""Settings of the web front (environment prefix ``MART_``, like every service's)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mart_common.settings import ServiceSettings
from pydantic import SecretStr

COOKIE_SECRET_FILE = "web-cookie-secret"  # noqa: S105 - the name of the file that holds it


class WebSettings(ServiceSettings):
    service_name: str = "web-service"
    # Where the six services' public APIs answer: the gateway (Kong, the built-in one, or the embedded mart)
    # with the services under their prefixes (/user-service, ...).
    gateway_url: str = "http://localhost:8000"
    # Per service (``user-service`` ...): a base URL that replaces ``gateway_url + prefix`` — for a deployment
    # without a gateway (``mart dist up`` without ``--gateway``, the containers without Kong).
    service_urls: dict[str, str] = {}
    # The console's health page: service name -> the base URLs of its replicas; unset services are asked
    # through the gateway (one answer per service).
    health_targets: dict[str, list[str]] = {}
    api_timeout_s: float = 15.0
    # Signs the session cookie; generated into <data dir>/web-cookie-secret when unset (never committed).
    cookie_secret: SecretStr | None = None
    # The session cookie's Secure flag: on wherever the shop is served over HTTPS.
    cookie_secure: bool = False
    # Stripe's publishable key (pk_test_...): with the Stripe provider, the order page shows Stripe's
    # Payment Element; without it, Stripe payments are completed outside the shop.
    stripe_publishable_key: str | None = None
    # Zipkin's UI (http://localhost:9411/zipkin/): the console links an order to its trace when set.
    zipkin_ui_url: str | None = None

    def api_base(self, service: str) -> str:
        """Base URL of one service's API (``service``: ``product-service``), without a trailing slash."""
        if url := self.service_urls.get(service):
            return url.rstrip("/")
        return f"{self.gateway_url.rstrip('/')}/{service}"

    def resolved_cookie_secret(self) -> str:
        """The configured secret, or the one kept in the data dir (created once, readable by its owner
        only; every process of one data dir — replicas included — signs with the same one)."""
        if self.cookie_secret is not None and self.cookie_secret.get_secret_value():
            return self.cookie_secret.get_secret_value()
        directory = Path(self.data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / COOKIE_SECRET_FILE
        if not path.exists():
            # Written whole under a temporary name, then linked in place: a replica starting at the same
            # moment either wins the link or reads the winner's complete file.
            tmp = directory / f".{COOKIE_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()
