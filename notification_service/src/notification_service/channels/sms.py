"""SMS: ``console`` logs the text (development), ``twilio`` sends it through Twilio's REST API."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from notification_service.channels.base import DeliveryError, OutgoingMessage, SmsSender

log = structlog.get_logger(__name__)


class ConsoleSmsSender(SmsSender):
    provider = "console"

    async def send(self, message: OutgoingMessage) -> None:
        log.info("sms", to=message.to, body=message.sms, kind=message.kind)


class TwilioSmsSender(SmsSender):
    provider = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str, client: Any = None) -> None:
        if client is None:
            from twilio.rest import Client

            client = Client(account_sid, auth_token)
        self.client = client
        self.from_number = from_number

    async def send(self, message: OutgoingMessage) -> None:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            # The Twilio client is synchronous (requests): keep it off the event loop.
            await asyncio.to_thread(
                self.client.messages.create, to=message.to, from_=self.from_number, body=message.sms
            )
        except TwilioRestException as exc:
            # 400: invalid or unreachable number (permanent); 401/429/5xx: worth retrying.
            raise DeliveryError(f"Twilio {exc.status}: {exc.msg}", permanent=exc.status == 400) from exc
        except (TwilioException, OSError) as exc:
            raise DeliveryError(f"Twilio unavailable: {exc!r}") from exc
