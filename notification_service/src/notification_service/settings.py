"""Settings of the notification service (environment variables prefixed ``MART_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mart_common.settings import ServiceSettings
from pydantic import SecretStr


class NotificationSettings(ServiceSettings):
    service_name: str = "notification-service"

    # Email: `file` writes .eml files (embedded default), `smtp` talks to Mailpit or a real server,
    # `gmail` sends through the Gmail API with an OAuth token (see the service README).
    email_backend: Literal["smtp", "gmail", "file"] = "file"
    email_from: str = "Online Mart <no-reply@online-mart.local>"
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False  # upgrade a plain connection (port 587)
    smtp_use_tls: bool = False  # implicit TLS from the first byte (port 465)
    smtp_timeout_s: float = 30.0
    gmail_credentials_file: Path | None = None  # default: <data_dir>/credentials.json
    gmail_token_file: Path | None = None  # default: <data_dir>/token.json
    mail_dir: Path | None = None  # `file` backend; default: <data_dir>/mail

    # SMS: `console` logs the text, `twilio` sends it.
    sms_backend: Literal["console", "twilio"] = "console"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None

    # Deliveries: retried with exponential backoff until sent or `delivery_max_attempts` is reached.
    delivery_max_attempts: int = 8
    delivery_backoff_initial_s: float = 5.0
    delivery_backoff_max_s: float = 900.0
    delivery_retry_interval_s: float = 2.0  # how often the retry loop looks for due deliveries
    delivery_lease_s: float = 120.0  # a claimed delivery whose sender vanished is retried after this
    delivery_timeout_s: float = 60.0  # one provider call
    delivery_batch_size: int = 50
    delivery_concurrency: int = 8

    def resolved_mail_dir(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"

    def resolved_gmail_credentials_file(self) -> Path:
        return self.gmail_credentials_file or self.data_dir / "credentials.json"

    def resolved_gmail_token_file(self) -> Path:
        return self.gmail_token_file or self.data_dir / "token.json"
