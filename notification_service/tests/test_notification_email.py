"""Email through a real SMTP server (aiosmtpd in-process): receipts arrive once, retries, preferences."""

from __future__ import annotations

import uuid

from mart_testkit.fixtures import KAFKA_BOOTSTRAP, eventually
from notification_service.domain import DeliveryStatus

from .conftest import (
    all_deliveries_done,
    attempts_of,
    deliveries,
    html_body,
    order_paid,
    order_shipped,
    processed,
    text_body,
    user_registered,
)


async def test_receipt_arrives_once_even_when_the_event_is_delivered_twice(
    service_client, smtp_server, jwt_keys
):
    handler, port = smtp_server
    # A retry loop that never runs during the test: the dispatcher, woken by the handler's commit, sends.
    user_id = uuid.uuid4()
    async with service_client(
        email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port, delivery_retry_interval_s=600
    ) as client:
        app = client.app
        await client.feed(user_registered(user_id, "ada@example.com"))
        paid = order_paid(user_id)
        await client.feed(paid)
        await client.feed(paid)  # redelivered by the broker

        async def receipt_arrived():
            return [m for _, m in handler.messages if "receipt" in m["Subject"].lower()]

        async def welcome_arrived():
            return [m for _, m in handler.messages if m["Subject"].startswith("Welcome")]

        # The two deliveries are independent: either may leave first. The subscriber calls above have
        # returned, so every delivery the events record exists now; once none is PENDING the dispatcher
        # has attempted each one, and a (wrong) second delivery for the redelivered event would be a row.
        await eventually(receipt_arrived)
        await eventually(welcome_arrived)
        await eventually(all_deliveries_done(app), message="every delivery attempted")
        assert len(await deliveries(app)) == 2
        assert len(await welcome_arrived()) == 1
        receipts = [(rcpt, m) for rcpt, m in handler.messages if "receipt" in m["Subject"].lower()]
        assert len(receipts) == 1
        rcpt, receipt = receipts[0]
        assert rcpt == ["ada@example.com"]
        assert "ada@example.com" in receipt["To"]
        assert receipt["Subject"] == f"Payment receipt for order {paid.key.split('-')[0].upper()}: $45.48"
        text = text_body(receipt)
        assert "2 x Blue Mug @ $19.99 = $39.98" in text
        assert "1 x Tea <Earl Grey> @ $5.50 = $5.50" in text
        assert "Total: $45.48" in text
        html = html_body(receipt)
        assert "Tea &lt;Earl Grey&gt;" in html and "<Earl Grey>" not in html  # autoescaped
        assert "$45.48" in html

        [email_delivery] = await deliveries(app, event_id=paid.id)
        assert email_delivery.status == DeliveryStatus.SENT
        assert email_delivery.attempts == 1
        assert email_delivery.recipient == "ada@example.com"

        listed = (await client.get("/notifications", headers=jwt_keys.headers(user_id))).json()
        assert listed["total"] == 2
        assert listed["items"][0]["kind"] == "payment_receipt"  # newest first


async def test_publishing_the_same_envelope_twice_on_the_bus_sends_one_email(
    service_client, smtp_server, bus_kind, kafka_namespace
):
    handler, port = smtp_server
    user_id = uuid.uuid4()
    async with service_client(
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        event_bus=bus_kind,
        kafka_namespace=kafka_namespace,
        kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
    ) as client:
        app = client.app
        bus = client.runtime.bus
        await bus.publish(user_registered(user_id, "grace@example.com").to_bus())
        paid = order_paid(user_id)
        await bus.publish(paid.to_bus())
        await bus.publish(paid.to_bus())
        # A later event on the same key (same partition, consumed in order): once it is in the inbox, the
        # consumer is past the duplicate, whatever it did with it.
        marker = order_shipped(user_id, uuid.UUID(paid.key))
        await bus.publish(marker.to_bus())
        await eventually(processed(app, marker.id), message="the consumer passed the duplicate")
        await eventually(all_deliveries_done(app), message="every delivery attempted")
        rows = await deliveries(app)
        assert len(rows) == 3
        assert [r.event_id for r in rows].count(paid.id) == 1
        assert all(r.status == DeliveryStatus.SENT for r in rows)
        assert len(handler.messages) == 3  # welcome, one receipt, shipped
        receipts = [m for _, m in handler.messages if "receipt" in m["Subject"].lower()]
        assert len(receipts) == 1
        assert sorted(rcpt[0] for rcpt, _ in handler.messages) == ["grace@example.com"] * 3


async def test_a_refusing_server_gets_the_email_after_retries(service_client, smtp_server):
    handler, port = smtp_server
    handler.refuse_first = 3
    user_id = uuid.uuid4()
    async with service_client(
        email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port, delivery_max_attempts=8
    ) as client:
        app = client.app
        envelope = user_registered(user_id, "linus@example.com")
        await client.feed(envelope)

        async def sent():
            [row] = await deliveries(app, event_id=envelope.id)
            return row if row.status == DeliveryStatus.SENT else None

        row = await eventually(sent)
        assert row.attempts == 4
        assert handler.calls == 4
        assert len(handler.messages) == 1
        attempts = await attempts_of(app, row.id)
        assert [a.outcome for a in attempts] == ["ERROR", "ERROR", "ERROR", "SENT"]
        assert "451" in (attempts[0].error or "")


async def test_email_preference_off_sends_no_email_but_keeps_the_in_app_notification(
    service_client, smtp_server, jwt_keys
):
    handler, port = smtp_server
    user_id = uuid.uuid4()
    async with service_client(email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port) as client:
        app = client.app
        response = await client.put(
            "/preferences", json={"email": False, "sms": False}, headers=jwt_keys.headers(user_id)
        )
        assert response.status_code == 200
        await client.feed(user_registered(user_id))
        paid = order_paid(user_id)
        await client.feed(paid)
        # The handler calls have returned: the dispatcher only sends recorded deliveries, and there are
        # none, so nothing can be sent later either.
        assert await deliveries(app) == []
        assert await client.runtime.context.dispatcher.dispatch_due() == 0
        assert handler.messages == []
        listed = (await client.get("/notifications", headers=jwt_keys.headers(user_id))).json()
        assert [n["kind"] for n in listed["items"]] == ["payment_receipt", "welcome"]
        assert "$45.48" in listed["items"][0]["body"]
