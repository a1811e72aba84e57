"""Deliveries that fail: backoff, permanent failures, attempts on record, nothing lost across restarts."""

from __future__ import annotations

import uuid
from datetime import timedelta

from mart.users.v1 import users_pb2
from mart_common.clock import utcnow
from mart_testkit.fixtures import eventually
from notification_service.channels import DeliveryError, OutgoingMessage, SmsSender
from notification_service.channels.sms import TwilioSmsSender
from notification_service.domain import Channel, DeliveryStatus
from notification_service.models import Delivery
from sqlalchemy import update

from .conftest import _free_port, attempts_of, deliveries, envelope_of, order_paid, user_registered


class BrokenSms(SmsSender):
    provider = "broken"

    def __init__(self, *, permanent: bool = False) -> None:
        self.calls = 0
        self.permanent = permanent

    async def send(self, message: OutgoingMessage) -> None:
        self.calls += 1
        raise DeliveryError("gateway says no", permanent=self.permanent)


class RecordingSms(SmsSender):
    provider = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> None:
        self.sent.append(message)


async def _enable_sms(client, jwt_keys, user_id):
    response = await client.put(
        "/preferences", json={"email": False, "sms": True}, headers=jwt_keys.headers(user_id)
    )
    assert response.status_code == 200


async def test_a_provider_that_keeps_failing_ends_in_failed_with_every_attempt_recorded(
    service_client, jwt_keys
):
    broken = BrokenSms()
    user_id = uuid.uuid4()
    async with service_client(senders={Channel.SMS: broken}, delivery_max_attempts=3) as client:
        app = client.app
        await _enable_sms(client, jwt_keys, user_id)
        envelope = user_registered(user_id, phone="+15550100")
        await client.feed(envelope)

        async def failed():
            [row] = await deliveries(app, event_id=envelope.id)
            return row if row.status == DeliveryStatus.FAILED else None

        row = await eventually(failed)
        # A full dispatcher pass after FAILED attempts nothing, even once its lease and backoff are long
        # past (time moved on by an hour): a FAILED delivery is never due again.
        async with client.runtime.db.transaction() as session:
            await session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(hours=1)))
        assert await client.runtime.context.dispatcher.dispatch_due() == 0
        assert broken.calls == 3
        assert row.attempts == 3 and row.last_error == "gateway says no"
        attempts = await attempts_of(app, row.id)
        assert [(a.number, a.outcome, a.provider) for a in attempts] == [
            (1, "ERROR", "broken"),
            (2, "ERROR", "broken"),
            (3, "ERROR", "broken"),
        ]
        assert all(a.error == "gateway says no" for a in attempts)
        # The in-app notification is there regardless.
        listed = (await client.get("/notifications", headers=jwt_keys.headers(user_id))).json()
        assert listed["total"] == 1


async def test_a_permanent_error_fails_at_once(service_client, jwt_keys):
    broken = BrokenSms(permanent=True)
    user_id = uuid.uuid4()
    async with service_client(senders={Channel.SMS: broken}) as client:
        app = client.app
        await _enable_sms(client, jwt_keys, user_id)
        envelope = user_registered(user_id, phone="+15550100")
        await client.feed(envelope)

        async def failed():
            [row] = await deliveries(app, event_id=envelope.id)
            return row if row.status == DeliveryStatus.FAILED else None

        row = await eventually(failed)
        assert row.attempts == 1 and broken.calls == 1


async def test_smtp_rejecting_the_recipient_permanently_marks_the_delivery_failed(
    service_client, smtp_server
):
    handler, port = smtp_server
    handler.refuse_always = "550 5.1.1 No such user"
    async with service_client(email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port) as client:
        app = client.app
        envelope = user_registered(uuid.uuid4(), "nobody@example.com")
        await client.feed(envelope)

        async def failed():
            [row] = await deliveries(app, event_id=envelope.id)
            return row if row.status == DeliveryStatus.FAILED else None

        row = await eventually(failed)
        assert row.attempts == 1 and "550" in row.last_error


async def test_pending_deliveries_survive_a_restart(service_client, smtp_server):
    handler, port = smtp_server
    user_id = uuid.uuid4()
    envelope = user_registered(user_id, "ada@example.com")
    async with service_client(
        email_backend="smtp", smtp_host="127.0.0.1", smtp_port=_free_port(), delivery_backoff_initial_s=0.3
    ) as client:
        down = client.app
        await client.feed(envelope)

        async def tried():
            [row] = await deliveries(down, event_id=envelope.id)
            return row.status == DeliveryStatus.PENDING and await attempts_of(down, row.id)

        await eventually(tried)
    # The service comes back with a reachable mail server: the pending delivery goes out.
    async with service_client(email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port) as client:
        up = client.app

        async def sent():
            [row] = await deliveries(up, event_id=envelope.id)
            return row if row.status == DeliveryStatus.SENT else None

        row = await eventually(sent)
        assert row.attempts >= 2
        assert [rcpt for rcpt, _ in handler.messages] == [["ada@example.com"]]


async def test_sms_goes_to_the_phone_on_file_and_is_skipped_without_one(service_client, jwt_keys):
    sms = RecordingSms()
    with_phone, without_phone = uuid.uuid4(), uuid.uuid4()
    async with service_client(senders={Channel.SMS: sms}) as client:
        app = client.app
        for user_id in (with_phone, without_phone):
            await _enable_sms(client, jwt_keys, user_id)
        await client.feed(user_registered(with_phone, "a@example.com", phone="+15550100"))
        await client.feed(user_registered(without_phone, "b@example.com"))
        paid = order_paid(with_phone)
        await client.feed(paid)

        async def settled():
            rows = await deliveries(app)
            return rows if len(rows) == 3 and all(r.status != DeliveryStatus.PENDING for r in rows) else None

        rows = await eventually(settled)
        by_user = {(r.user_id, r.event_id): r for r in rows}
        assert by_user[(with_phone, paid.id)].status == DeliveryStatus.SENT
        skipped = [r for r in rows if r.user_id == without_phone]
        assert [(r.status, r.last_error) for r in skipped] == [
            (DeliveryStatus.SKIPPED, "no phone number on file")
        ]
        assert {m.to for m in sms.sent} == {"+15550100"}
        receipt = next(m for m in sms.sent if m.kind == "payment_receipt")
        assert "$45.48" in receipt.sms


async def test_contact_updates_are_used_for_later_deliveries(service_client, smtp_server):
    handler, port = smtp_server
    user_id = uuid.uuid4()
    async with service_client(email_backend="smtp", smtp_host="127.0.0.1", smtp_port=port) as client:
        await client.feed(user_registered(user_id, "old@example.com"))
        updated = users_pb2.UserUpdated(
            user_id=str(user_id), email="new@example.com", full_name="Ada L.", is_active=True
        )
        await client.feed(envelope_of(updated, str(user_id)))
        await client.feed(order_paid(user_id))

        async def two():
            return len(handler.messages) == 2

        await eventually(two)
        [(rcpt, receipt)] = [(r, m) for r, m in handler.messages if "receipt" in m["Subject"].lower()]
        assert rcpt == ["new@example.com"]
        assert receipt["To"] == '"Ada L." <new@example.com>'


async def test_twilio_sender_uses_the_client_off_the_loop():
    calls = []

    class FakeMessages:
        def create(self, **kwargs):
            calls.append(kwargs)

    class FakeClient:
        messages = FakeMessages()

    sender = TwilioSmsSender(account_sid="AC1", auth_token="t", from_number="+15550000", client=FakeClient())
    from datetime import UTC, datetime

    await sender.send(
        OutgoingMessage(
            delivery_id=uuid.uuid4(),
            kind="welcome",
            to="+15550100",
            to_name="",
            subject="s",
            text="t",
            html="h",
            sms="Welcome!",
            created_at=datetime.now(UTC),
        )
    )
    assert calls == [{"to": "+15550100", "from_": "+15550000", "body": "Welcome!"}]


async def test_operators_see_failed_deliveries_and_can_send_them_again(service_client, jwt_keys):
    broken = BrokenSms()
    user_id = uuid.uuid4()
    admin = jwt_keys.headers(uuid.uuid4(), "admin")
    async with service_client(senders={Channel.SMS: broken}, delivery_max_attempts=2) as client:
        app = client.app
        await _enable_sms(client, jwt_keys, user_id)
        envelope = user_registered(user_id, phone="+15550100")
        await client.feed(envelope)

        async def failed():
            page = (await client.get("/deliveries?status=FAILED", headers=admin)).json()
            return page["items"] if page["total"] == 1 else None

        [row] = await eventually(failed)
        assert row["channel"] == "sms" and row["attempts"] == 2 and row["last_error"] == "gateway says no"
        assert (await client.get("/deliveries", headers=jwt_keys.headers(user_id))).status_code == 403

        working = RecordingSms()
        client.runtime.context.senders[Channel.SMS] = working
        retried = await client.post(f"/deliveries/{row['id']}/retry", headers=admin)
        assert retried.status_code == 202 and retried.json()["status"] == "PENDING"

        async def sent():
            [d] = await deliveries(app, event_id=envelope.id)
            return d if d.status == DeliveryStatus.SENT else None

        await eventually(sent)
        assert [m.to for m in working.sent] == ["+15550100"]
        again = await client.post(f"/deliveries/{row['id']}/retry", headers=admin)
        assert again.status_code == 409
        missing = await client.post(f"/deliveries/{uuid.uuid4()}/retry", headers=admin)
        assert missing.status_code == 404


async def test_a_delivery_handed_over_but_never_sent_goes_out_when_its_lease_runs_out(
    service_client, jwt_keys
):
    """The event's transaction claims the first attempt and hands it to the dispatcher in memory; a process
    that stops before sending it loses nothing: once the lease runs out, the search sends it."""
    sms = RecordingSms()
    user_id = uuid.uuid4()
    async with service_client(senders={Channel.SMS: sms}) as client:
        app = client.app
        await _enable_sms(client, jwt_keys, user_id)
        dispatcher = client.runtime.context.dispatcher
        await dispatcher.stop()  # the hand-over below is never sent by this process
        envelope = user_registered(user_id, phone="+15550100")
        await client.feed(envelope)
        [row] = await deliveries(app, event_id=envelope.id)
        assert row.status == DeliveryStatus.PENDING and row.attempts == 1
        assert await dispatcher.dispatch_due() == 0  # leased: not due yet
        assert sms.sent == []
        async with client.runtime.db.transaction() as session:  # the lease ran out
            await session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert await dispatcher.dispatch_due() == 1
        [row] = await deliveries(app, event_id=envelope.id)
        assert row.status == DeliveryStatus.SENT and row.attempts == 2
        assert [m.to for m in sms.sent] == ["+15550100"]


async def test_the_email_and_the_sms_of_one_event_are_both_sent_with_their_attempts_on_record(
    service_client, jwt_keys
):
    """Two deliveries handed over by one transaction go out together, and each attempt is recorded with
    its delivery's new state (one transaction for the batch)."""
    sms = RecordingSms()
    user_id = uuid.uuid4()
    async with service_client(senders={Channel.SMS: sms}) as client:
        app = client.app
        response = await client.put(
            "/preferences", json={"email": True, "sms": True}, headers=jwt_keys.headers(user_id)
        )
        assert response.status_code == 200
        envelope = user_registered(user_id, "ada@example.com", phone="+15550100")
        await client.feed(envelope)

        async def both_sent():
            rows = await deliveries(app, event_id=envelope.id)
            return rows if len(rows) == 2 and all(r.status == DeliveryStatus.SENT for r in rows) else None

        rows = await eventually(both_sent)
        assert sorted(row.channel for row in rows) == ["email", "sms"]
        for row in rows:
            assert row.attempts == 1 and row.recipient in ("ada@example.com", "+15550100")
            assert [(a.number, a.outcome) for a in await attempts_of(app, row.id)] == [(1, "SENT")]
        assert [m.to for m in sms.sent] == ["+15550100"]
