"""Email written to ``.eml`` files (the embedded mode's default): open them with any mail client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from notification_service.channels.base import EmailSender, OutgoingMessage


class FileEmailSender(EmailSender):
    provider = "file"

    def __init__(self, directory: Path, from_address: str) -> None:
        super().__init__(from_address)
        self.directory = directory

    def path_for(self, message: OutgoingMessage) -> Path:
        # Named after the delivery: a retried delivery rewrites its file instead of adding one.
        return self.directory / f"{message.created_at:%Y%m%dT%H%M%S}-{message.kind}-{message.delivery_id}.eml"

    async def send(self, message: OutgoingMessage) -> None:
        # Building the MIME message costs more CPU than writing it: both off the event loop.
        await asyncio.to_thread(self._write, message)

    def _write(self, message: OutgoingMessage) -> None:
        data = self.build_email(message).as_bytes()
        path = self.path_for(message)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
