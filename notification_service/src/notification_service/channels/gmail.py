"""Email through the Gmail API (``users.messages.send``) with an OAuth token, as the original project did.

One-time setup (see the service README): download ``credentials.json`` (an OAuth client of type
"Desktop app") from the Google Cloud Console, then run::

    uv run python -m notification_service.channels.gmail credentials.json token.json

which opens the consent screen once and writes ``token.json``. The service then reads both files
(``MART_GMAIL_CREDENTIALS_FILE``, ``MART_GMAIL_TOKEN_FILE``) and refreshes the token by itself.

The Google client is synchronous (httplib2): every call runs in a worker thread, never on the event loop.
The API surface comes from the discovery document shipped inside google-api-python-client, so building
the client needs no network.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from notification_service.channels.base import DeliveryError, EmailSender, OutgoingMessage

SCOPES = ["https://www.googleapis.com/auth/gmail.send"]


@lru_cache(maxsize=1)
def gmail_discovery_document() -> dict[str, Any]:
    """The Gmail v1 discovery document bundled with google-api-python-client (no network)."""
    from googleapiclient.discovery_cache import get_static_doc

    doc = get_static_doc("gmail", "v1")
    if doc is None:  # pragma: no cover - the package always ships it
        raise RuntimeError("google-api-python-client ships no Gmail discovery document")
    return json.loads(doc)


def build_gmail_service(*, credentials: Any = None, http: Any = None, request_builder: Any = None) -> Any:
    """A Gmail API client built from the bundled discovery document.

    ``http``/``request_builder`` are for tests (``googleapiclient.http.HttpMockSequence``,
    ``RequestMockBuilder``); in production ``credentials`` carry the OAuth token.
    """
    from googleapiclient.discovery import build_from_document
    from googleapiclient.http import HttpRequest

    return build_from_document(
        gmail_discovery_document(),
        credentials=None if http is not None else credentials,
        http=http,
        requestBuilder=request_builder or HttpRequest,
    )


def encode_raw(message_bytes: bytes) -> str:
    """The ``raw`` field of ``users.messages.send``: the RFC 822 message, base64url-encoded."""
    return base64.urlsafe_b64encode(message_bytes).decode("ascii")


class GmailEmailSender(EmailSender):
    provider = "gmail"

    def __init__(
        self,
        *,
        credentials_file: Path,
        token_file: Path,
        from_address: str,
        http: Any = None,
        request_builder: Any = None,
    ) -> None:
        super().__init__(from_address)
        self.credentials_file = credentials_file
        self.token_file = token_file
        self._http = http
        self._request_builder = request_builder

    def _credentials(self) -> Any:
        from google.auth.transport.requests import Request
        from google.oauth2.credentials import Credentials

        if not self.token_file.exists():
            raise DeliveryError(
                f"Gmail token {self.token_file} is missing: run authorize_gmail "
                f"(python -m notification_service.channels.gmail {self.credentials_file} {self.token_file})"
            )
        creds = Credentials.from_authorized_user_file(str(self.token_file), SCOPES)
        if not creds.valid and creds.expired and creds.refresh_token:
            creds.refresh(Request())
            try:
                self.token_file.write_text(creds.to_json())
            except OSError:
                pass  # a read-only mount: the refreshed token lives in memory until the next restart
        return creds

    def _send_sync(self, raw: str) -> dict[str, Any]:
        from google.auth.exceptions import GoogleAuthError
        from googleapiclient.errors import HttpError

        try:
            credentials = None if self._http is not None else self._credentials()
            # A client per call: httplib2 connections are not thread-safe.
            service = build_gmail_service(
                credentials=credentials, http=self._http, request_builder=self._request_builder
            )
            return service.users().messages().send(userId="me", body={"raw": raw}).execute(num_retries=0)
        except HttpError as exc:
            status = int(getattr(exc.resp, "status", 0) or 0)
            # 400: the message itself is bad; 401/403/429/5xx: token, quota or Google, worth retrying.
            raise DeliveryError(f"Gmail API {status}: {exc._get_reason()}", permanent=status == 400) from exc
        except GoogleAuthError as exc:
            raise DeliveryError(f"Gmail authorization failed: {exc}") from exc
        except OSError as exc:
            raise DeliveryError(f"Gmail unavailable: {exc!r}") from exc

    async def send(self, message: OutgoingMessage) -> None:
        raw = encode_raw(self.build_email(message).as_bytes())
        await asyncio.to_thread(self._send_sync, raw)


def authorize_gmail(credentials: str | Path, token: str | Path) -> Path:
    """Run Google's installed-app OAuth flow once (opens a browser) and write ``token``.

    ``credentials``: the OAuth client file downloaded from the Google Cloud Console.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    flow = InstalledAppFlow.from_client_secrets_file(str(credentials), SCOPES)
    creds = flow.run_local_server(port=0)
    token_path = Path(token)
    token_path.parent.mkdir(parents=True, exist_ok=True)
    token_path.write_text(creds.to_json())
    return token_path


if __name__ == "__main__":  # pragma: no cover - interactive
    if len(sys.argv) != 3:
        sys.exit("usage: python -m notification_service.channels.gmail CREDENTIALS_JSON TOKEN_JSON")
    print(f"wrote {authorize_gmail(sys.argv[1], sys.argv[2])}")
