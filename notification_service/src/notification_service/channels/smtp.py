"""Email over SMTP (aiosmtplib): Mailpit in compose, or any real server with STARTTLS/TLS and login."""

from __future__ import annotations

import aiosmtplib

from notification_service.channels.base import DeliveryError, EmailSender, OutgoingMessage

# 5xx replies that are about our configuration, not the message: worth retrying once fixed.
_AUTH_CODES = frozenset({530, 534, 535, 538})


class SmtpEmailSender(EmailSender):
    provider = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_address: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(from_address)
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.timeout_s = timeout_s

    async def send(self, message: OutgoingMessage) -> None:
        try:
            await aiosmtplib.send(
                self.build_email(message),
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=self.password or None,
                use_tls=self.use_tls,
                start_tls=self.starttls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [response.code for response in exc.recipients]
            permanent = bool(codes) and all(500 <= code < 600 for code in codes)
            raise DeliveryError(f"recipient refused: {exc}", permanent=permanent) from exc
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600 and exc.code not in _AUTH_CODES
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=permanent) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP unavailable: {exc!r}") from exc
