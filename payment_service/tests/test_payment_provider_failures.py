"""Stripe failing: the real ``stripe`` SDK against a local server that answers like Stripe's API
(``mart_testkit.fake_stripe.FakeStripeAPI``), on SQLite and PostgreSQL.

Intent creation is retried with backoff on network errors, timeouts and 5xx (same idempotency key every
time), fails the payment with a clear reason on a refusal or when retries run out (PaymentFailed, so the
order is cancelled at once), and survives a restart. A failing refund is retried until it goes through,
visible on the payment and in the metrics meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mart.payments.v1 import payments_pb2
from mart_testkit.fake_stripe import FakeStripeAPI, refused_url
from mart_testkit.fixtures import eventually
from payment_service.providers import StripeProvider, sign_payload

SECRET = "whsec_local_stripe"
# Fast retries for tests: 0.05 s, 0.1 s, 0.2 s, … capped at 0.2 s; intent creation gives up at 4 attempts.
RETRY = {
    "provider_retry_base_s": 0.05,
    "provider_retry_max_s": 0.2,
    "provider_max_attempts": 4,
    "provider_poll_interval_s": 0.2,
    "stripe_webhook_secret": SECRET,
}


@pytest.fixture
def stripe_api() -> Iterator[FakeStripeAPI]:
    with FakeStripeAPI() as api:
        yield api


def stripe(api_base: str) -> StripeProvider:
    # No retries inside the SDK: every attempt is one of ours, so the server sees each of them.
    return StripeProvider("sk_test_local", SECRET, api_base=api_base, timeout_s=0.5, max_network_retries=0)


async def payment_in(h: Any, order_id: uuid.UUID, status: str, check: Any = None) -> Any:
    async def ready() -> Any:
        p = await h.payment(order_id)
        return p if p is not None and p.status == status and (check is None or check(p)) else None

    return await eventually(ready, timeout=20, message=f"payment of {order_id} is {status}")


async def test_transient_failures_are_retried_with_the_same_key_until_the_intent_exists(
    harness_factory, stripe_api
):
    # A dropped connection, a 500, a timeout, a 503, then Stripe answers.
    stripe_api.script("create", "drop", 500, "hang", 503)
    async with harness_factory(provider=stripe(stripe_api.url), **{**RETRY, "provider_max_attempts": 6}) as h:
        order_id = await h.order_awaiting_payment(total_cents=1990)
        p = await payment_in(h, order_id, "REQUIRES_PAYMENT")
        sent = stripe_api.sent("create")
        assert [r.answer for r in sent] == ["drop", 500, "hang", 503, "ok"]
        assert {r.idempotency_key for r in sent} == {f"order-{order_id}"}  # one intent, whatever the retries
        assert p.attempts == 5 and p.last_error is None and p.next_attempt_at is None
        assert p.provider_payment_id.startswith("pi_local") and p.client_secret.startswith(
            p.provider_payment_id
        )
        [requested] = await h.published(payments_pb2.PaymentRequested, order_id)
        assert requested.client_secret == p.client_secret
        assert await h.published(payments_pb2.PaymentFailed, order_id) == []


async def test_card_declined_fails_the_payment_at_once_with_the_reason(harness_factory, stripe_api):
    stripe_api.script("create", 402)
    async with harness_factory(provider=stripe(stripe_api.url), **RETRY) as h:
        order_id = await h.order_awaiting_payment()
        p = await payment_in(h, order_id, "FAILED")
        assert p.failure_reason == "card declined: Your card was declined."
        assert len(stripe_api.sent("create")) == 1  # a refusal is not retried
        [failed] = await h.published(payments_pb2.PaymentFailed, order_id)
        assert failed.reason == "card declined: Your card was declined."
        assert await h.outbox_types(order_id) == ["PaymentFailed"]  # never asked the customer to pay
        r = await h.client.get(f"/payments/{p.id}", headers=h.auth())
        assert r.json()["status"] == "FAILED" and r.json()["failure_reason"] == p.failure_reason


async def test_provider_unreachable_fails_the_payment_after_the_last_attempt(harness_factory):
    async with harness_factory(provider=stripe(refused_url()), **RETRY) as h:
        order_id = await h.order_awaiting_payment()
        p = await payment_in(h, order_id, "FAILED")
        assert p.attempts == 4
        assert p.failure_reason.startswith("payment provider unreachable")
        assert p.failure_reason.endswith("(gave up after 4 attempts)")
        [failed] = await h.published(payments_pb2.PaymentFailed, order_id)
        assert failed.reason == p.failure_reason


async def test_pending_intent_creation_survives_a_restart(harness_factory, stripe_api):
    stripe_api.fail("create", 500)
    retry = {**RETRY, "provider_max_attempts": 1000}
    async with harness_factory(provider=stripe(stripe_api.url), **retry) as h:
        order_id = await h.order_awaiting_payment()
        stuck = await payment_in(h, order_id, "CREATING", lambda p: p.attempts >= 2)
        assert stuck.last_error.startswith("payment provider error")
        r = await h.client.get(f"/payments/{stuck.id}", headers=h.auth())
        assert r.json()["status"] == "CREATING" and r.json()["attempts"] >= 2
    # The service stops with the payment still CREATING; Stripe recovers; a new process takes it over.
    stripe_api.heal("create")
    async with harness_factory(provider=stripe(stripe_api.url), **retry) as h:
        p = await payment_in(h, order_id, "REQUIRES_PAYMENT")
        assert p.attempts > stuck.attempts
        assert len(await h.published(payments_pb2.PaymentRequested, order_id)) == 1


async def cancelled_during_the_second_create(h: Any, stripe_api: FakeStripeAPI) -> uuid.UUID:
    """An order awaiting payment, cancelled while the second create request is at Stripe."""
    order_id = await h.order_awaiting_payment()

    async def retry_in_flight() -> bool:
        return len(stripe_api.sent("create")) == 2

    await eventually(retry_in_flight, timeout=10, message="the second create request at Stripe")
    await h.order_cancelled(order_id, was_paid=False)
    return order_id


async def test_an_intent_whose_answer_was_lost_is_voided_and_recorded_when_the_order_is_cancelled(
    harness_factory, stripe_api
):
    # Stripe creates the intent but its answer never arrives (a cut connection, or a replica killed right
    # after the call); the retry hangs, and the order is cancelled meanwhile.
    stripe_api.script("create", "lost", "hang")
    async with harness_factory(provider=stripe(stripe_api.url), **RETRY) as h:
        order_id = await cancelled_during_the_second_create(h, stripe_api)
        await payment_in(h, order_id, "FAILED")
        [intent] = stripe_api.created_intents()
        assert intent["metadata"]["order_id"] == str(order_id)
        # The intent Stripe holds is found again (the same idempotency key), cancelled and recorded.
        voided = await payment_in(h, order_id, "FAILED", lambda p: p.next_attempt_at is None)
        assert voided.provider_payment_id == intent["id"] and voided.failure_reason == "order cancelled"

        async def cancelled_at_stripe() -> list[str]:  # after the record's commit
            return [r.path for r in stripe_api.sent("cancel")]

        cancels = await eventually(cancelled_at_stripe, timeout=10, message="the intent cancelled at Stripe")
        assert cancels == [f"/v1/payment_intents/{intent['id']}/cancel"]
        assert {r.idempotency_key for r in stripe_api.sent("create")} == {f"order-{order_id}"}
        assert len(stripe_api.created_intents()) == 1
        assert await h.outbox_types(order_id) == ["PaymentFailed"]


async def test_a_cancelled_payment_the_provider_refused_leaves_nothing_to_void(harness_factory, stripe_api):
    # The first create fails without Stripe acting (a 500), the retry hangs, the order is cancelled; the
    # pass that looks for an intent to void gets a refusal: no intent exists, nothing is created.
    stripe_api.script("create", 500, "hang", 402)
    async with harness_factory(provider=stripe(stripe_api.url), **RETRY) as h:
        order_id = await cancelled_during_the_second_create(h, stripe_api)
        done = await payment_in(h, order_id, "FAILED", lambda p: p.next_attempt_at is None)
        assert done.provider_payment_id is None and done.failure_reason == "order cancelled"
        assert [r.answer for r in stripe_api.sent("create")] == [500, "hang", 402]
        assert stripe_api.created_intents() == [] and stripe_api.sent("cancel") == []
        assert await h.outbox_types(order_id) == ["PaymentFailed"]


def metric(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


async def test_failing_refund_is_retried_visible_and_never_lost(harness_factory, stripe_api):
    async with harness_factory(provider=stripe(stripe_api.url), **RETRY) as h:
        order_id = await h.order_awaiting_payment()
        p = await payment_in(h, order_id, "REQUIRES_PAYMENT")
        payload = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(time.time()),
                "data": {"object": {"id": p.provider_payment_id, "object": "payment_intent"}},
            }
        )
        r = await h.client.post(
            "/webhook", content=payload, headers={"Stripe-Signature": sign_payload(payload, SECRET)}
        )
        assert r.status_code == 200, r.text
        await payment_in(h, order_id, "SUCCEEDED")
        before = metric(
            (await h.client.get("/metrics")).text,
            "mart_payment_provider_errors_total",
            'kind="transient",operation="refund"',
        )

        stripe_api.fail("refund", 500)
        await h.order_cancelled(order_id, was_paid=True)
        pending = await payment_in(h, order_id, "REFUND_PENDING", lambda p: p.attempts >= 3)
        assert pending.last_error.startswith("payment provider error")
        body = (await h.client.get(f"/payments/{p.id}", headers=h.admin)).json()
        assert body["status"] == "REFUND_PENDING" and body["attempts"] >= 3 and body["last_error"]
        metrics = (await h.client.get("/metrics")).text
        assert metric(metrics, "mart_payment_refunds_pending") == 1
        errors = metric(metrics, "mart_payment_provider_errors_total", 'kind="transient",operation="refund"')
        assert errors - before >= 3
        assert await h.published(payments_pb2.PaymentRefunded, order_id) == []

        stripe_api.heal("refund")
        refunded = await payment_in(h, order_id, "REFUNDED")
        assert refunded.refund_id.startswith("re_local") and refunded.last_error is None
        refunds = stripe_api.sent("refund")
        assert {r.idempotency_key for r in refunds} == {f"refund-{p.id}"}
        assert [r.answer for r in refunds][-1] == "ok" and len(refunds) == refunded.attempts
        assert await h.outbox_types(order_id) == ["PaymentRequested", "PaymentSucceeded", "PaymentRefunded"]

        async def gauge_cleared() -> bool:
            return metric((await h.client.get("/metrics")).text, "mart_payment_refunds_pending") == 0

        await eventually(gauge_cleared, timeout=10, message="no refund pending in the metrics")
