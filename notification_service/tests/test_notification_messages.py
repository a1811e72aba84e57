"""Message content: money formatting, templates of every kind, autoescaping."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy

import pytest
from mart.orders.v1 import orders_pb2
from mart_testkit.fixtures import eventually
from notification_service.domain import Kind, format_money
from notification_service.rendering import order_context, render

from .conftest import deliveries, envelope_of, user_registered


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (1999, "USD", "$19.99"),
        (5, "USD", "$0.05"),
        (123456789, "USD", "$1,234,567.89"),
        (1500, "JPY", "¥1,500"),
        (1999, "eur", "€19.99"),
        (1999, "CHF", "CHF 19.99"),
        (12345, "KWD", "KWD 12.345"),
        (-250, "GBP", "-£2.50"),
    ],
)
def test_money_is_formatted_from_minor_units(cents, currency, text):
    assert format_money(cents, currency) == text


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_renders(kind):
    line = orders_pb2.OrderLine(product_id="p", product_name="Mug", quantity=1, unit_price_cents=100)
    context = {
        **order_context(str(uuid.uuid4()), [line], 100, "USD"),
        "name": "Ada",
        "email": "ada@example.com",
        "payment_id": "pay_1",
        "reason": "out of stock",
        "was_paid": True,
        "amount": "$1.00",
    }
    message = render(kind, context)
    assert message.subject and "\n" not in message.subject
    assert "Ada" in message.text and "<html" in message.html and message.sms


def test_html_is_autoescaped_and_text_is_not():
    line = orders_pb2.OrderLine(product_name="<b>Bold</b> & co", quantity=1, unit_price_cents=100)
    message = render(Kind.ORDER_RECEIVED, {**order_context("o-1", [line], 100, "USD"), "name": "<i>Ada</i>"})
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in message.html and "<b>Bold" not in message.html
    assert "&lt;i&gt;Ada&lt;/i&gt;" in message.html
    assert "<b>Bold</b> & co" in message.text


async def test_file_backend_writes_one_eml_per_delivery(service_client, tmp_path):
    user_id = uuid.uuid4()
    async with service_client(email_backend="file") as client:
        app = client.app
        await client.feed(user_registered(user_id, "ada@example.com"))
        rejected = orders_pb2.OrderRejected(
            order_id=str(uuid.uuid4()),
            user_id=str(user_id),
            lines=[orders_pb2.OrderLine(product_name="Lamp", quantity=1, unit_price_cents=150000)],
            total_cents=150000,
            currency="JPY",
            reason="out of stock",
        )
        envelope = envelope_of(rejected, rejected.order_id)
        await client.feed(envelope)
        await client.feed(envelope)

        async def two_files():
            files = sorted((tmp_path / "mail").glob("*.eml"))
            return files if len(files) == 2 else None

        files = await eventually(two_files)
        assert len(await deliveries(app)) == 2
    mails = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    rejection = next(m for m in mails if "could not be accepted" in m["Subject"])
    assert rejection["To"] == "Ada Lovelace <ada@example.com>"
    assert "¥150,000" in rejection.get_body(("plain",)).get_content()
    assert "out of stock" in rejection.get_body(("plain",)).get_content()
