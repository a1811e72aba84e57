"""The Gmail provider, exercised offline with google-api-python-client's own HTTP mocks."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from urllib.parse import urlparse

import pytest
from googleapiclient.http import HttpMockSequence, RequestMockBuilder
from mart_testkit.fixtures import eventually
from notification_service.channels import DeliveryError, OutgoingMessage, build_senders
from notification_service.channels.gmail import GmailEmailSender, build_gmail_service
from notification_service.domain import Channel, DeliveryStatus
from notification_service.settings import NotificationSettings

from .conftest import deliveries, order_paid, user_registered


def outgoing(**overrides) -> OutgoingMessage:
    values = {
        "delivery_id": uuid.uuid4(),
        "kind": "payment_receipt",
        "to": "ada@example.com",
        "to_name": "Ada Lovelace",
        "subject": "Payment receipt for order 1A2B3C4D: $45.48",
        "text": "Hi Ada,\n  2 x Blue Mug @ $19.99 = $39.98\n  Total: $45.48\n",
        "html": "<p>Total: <strong>$45.48</strong></p>",
        "sms": "paid",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    values.update(overrides)
    return OutgoingMessage(**values)


def sender_with(http, tmp_path, request_builder=None) -> GmailEmailSender:
    return GmailEmailSender(
        credentials_file=tmp_path / "credentials.json",
        token_file=tmp_path / "token.json",
        from_address="Online Mart <shop@example.com>",
        http=http,
        request_builder=request_builder,
    )


def sent_mime(request_sequence):
    """The MIME message inside the recorded users.messages.send request."""
    [(uri, method, body, headers)] = request_sequence
    assert method == "POST"
    assert urlparse(uri).path == "/gmail/v1/users/me/messages/send"
    raw = json.loads(body)["raw"]
    return message_from_bytes(base64.urlsafe_b64decode(raw), policy=policy.default)


async def test_send_posts_a_valid_raw_mime_message(tmp_path):
    http = HttpMockSequence([({"status": "200"}, json.dumps({"id": "18c0ffee", "labelIds": ["SENT"]}))])
    message = outgoing()
    await sender_with(http, tmp_path).send(message)

    mime = sent_mime(http.request_sequence)
    assert mime["To"] == "Ada Lovelace <ada@example.com>"
    assert mime["From"] == "Online Mart <shop@example.com>"
    assert mime["Subject"] == "Payment receipt for order 1A2B3C4D: $45.48"
    assert mime["Message-ID"] == f"<{message.delivery_id}@example.com>"
    assert mime.get_content_type() == "multipart/alternative"
    assert "2 x Blue Mug @ $19.99 = $39.98" in mime.get_body(("plain",)).get_content()
    assert "<strong>$45.48</strong>" in mime.get_body(("html",)).get_content()


async def test_the_client_is_built_from_the_bundled_discovery_document():
    # RequestMockBuilder answers by method id: proves the method exists in the offline document and
    # the request body it gets is the {"raw": ...} the API expects.
    builder = RequestMockBuilder(
        {"gmail.users.messages.send": (None, json.dumps({"id": "1"}))}, check_unexpected=True
    )
    service = build_gmail_service(http=HttpMockSequence([]), request_builder=builder)
    assert service.users().messages().send(userId="me", body={"raw": "eA"}).execute() == {"id": "1"}


@pytest.mark.parametrize(
    ("status", "permanent"), [("400", True), ("429", False), ("500", False), ("401", False)]
)
async def test_api_errors_are_classified(tmp_path, status, permanent):
    error = json.dumps({"error": {"code": int(status), "message": "nope", "errors": [{"reason": "x"}]}})
    http = HttpMockSequence([({"status": status}, error)])
    with pytest.raises(DeliveryError) as raised:
        await sender_with(http, tmp_path).send(outgoing())
    assert raised.value.permanent is permanent
    assert status in str(raised.value)


async def test_without_a_token_the_error_says_how_to_authorize(tmp_path):
    sender = sender_with(None, tmp_path)
    with pytest.raises(DeliveryError, match="authorize_gmail") as raised:
        await sender.send(outgoing())
    assert not raised.value.permanent


def test_settings_choose_the_gmail_provider(tmp_path):
    settings = NotificationSettings(
        data_dir=tmp_path, email_backend="gmail", gmail_token_file=tmp_path / "secret" / "token.json"
    )
    sender = build_senders(settings)[Channel.EMAIL]
    assert isinstance(sender, GmailEmailSender)
    assert sender.token_file == tmp_path / "secret" / "token.json"
    assert sender.credentials_file == tmp_path / "credentials.json"


async def test_receipt_goes_through_gmail_end_to_end(service_client):
    ok = json.dumps({"id": "m1", "labelIds": ["SENT"]})
    http = HttpMockSequence([({"status": "200"}, ok), ({"status": "200"}, ok)])
    gmail = GmailEmailSender(
        credentials_file=None, token_file=None, from_address="Online Mart <shop@example.com>", http=http
    )
    user_id = uuid.uuid4()
    async with service_client(email_backend="gmail", senders={Channel.EMAIL: gmail}) as client:
        app = client.app
        await client.feed(user_registered(user_id, "ada@example.com"))
        paid = order_paid(user_id)
        await client.feed(paid)

        async def all_sent():
            rows = await deliveries(app)
            return len(rows) == 2 and all(r.status == DeliveryStatus.SENT for r in rows)

        await eventually(all_sent)
    subjects = []
    for _uri, _method, body, _headers in http.request_sequence:
        mime = message_from_bytes(base64.urlsafe_b64decode(json.loads(body)["raw"]), policy=policy.default)
        assert mime["To"] == "Ada Lovelace <ada@example.com>"
        subjects.append(mime["Subject"])
    assert sorted(subjects)[0].startswith("Payment receipt for order") and subjects[0] != subjects[1]
