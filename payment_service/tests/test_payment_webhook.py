"""POST /webhook: Stripe's signature over the raw body, de-duplication by Stripe event id,
out-of-order events."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

from mart.payments.v1 import payments_pb2


def stripe_event(pi: str, type_: str = "payment_intent.succeeded", *, event_id: str | None = None) -> str:
    obj = {"id": pi, "object": "payment_intent", "amount": 4200, "currency": "usd", "metadata": {}}
    if type_ == "payment_intent.payment_failed":
        obj["last_payment_error"] = {"message": "Your card was declined."}
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": type_,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    )


def signature(payload: str, secret: str = "whsec_test_" + "0" * 24, t: int | None = None) -> str:
    """Stripe's scheme: ``t=<ts>,v1=<hex hmac_sha256(secret, f"{t}.{payload}")>`` (the harness's secret)."""
    t = int(time.time()) if t is None else t
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.{payload}'.encode(), hashlib.sha256).hexdigest()}"


async def post(harness, payload: str, sig: str | None):
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["Stripe-Signature"] = sig
    return await harness.client.post("/webhook", content=payload.encode(), headers=headers)


async def pending_payment(harness):
    order_id = await harness.order_awaiting_payment()
    return await harness.wait_payment(order_id)


async def test_valid_signature_is_accepted_and_pays(harness):
    p = await pending_payment(harness)
    payload = stripe_event(p.provider_payment_id)
    r = await post(harness, payload, signature(payload))
    assert r.status_code == 200, r.text
    assert r.json()["duplicate"] is False
    assert (await harness.payment(p.order_id)).status == "SUCCEEDED"
    [ev] = await harness.published(payments_pb2.PaymentSucceeded, p.order_id)
    assert (
        ev.amount_cents == 4200
        and ev.payment_id == str(p.id)
        and ev.provider_payment_id == p.provider_payment_id
    )


async def test_bad_signatures_are_400_and_change_nothing(harness):
    p = await pending_payment(harness)
    payload = stripe_event(p.provider_payment_id)
    cases = {
        "wrong secret": (payload, signature(payload, secret="whsec_someone_else")),
        "stale timestamp": (payload, signature(payload, t=int(time.time()) - 301)),
        "tampered body": (payload.replace("4200", "1"), signature(payload)),
        "no header": (payload, None),
        "garbage header": (payload, "nonsense"),
    }
    for name, (body, sig) in cases.items():
        r = await post(harness, body, sig)
        assert r.status_code == 400, (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), name
        assert r.json()["status"] == 400
    assert (await harness.payment(p.order_id)).status == "REQUIRES_PAYMENT"
    assert await harness.published(payments_pb2.PaymentSucceeded, p.order_id) == []


async def test_signed_non_event_body_is_400(harness):
    body = "not json"
    r = await post(harness, body, signature(body))
    assert r.status_code == 400


async def test_same_stripe_event_twice_has_one_effect(harness):
    p = await pending_payment(harness)
    payload = stripe_event(p.provider_payment_id, event_id="evt_same")
    first = await post(harness, payload, signature(payload))
    again = await post(harness, payload, signature(payload))
    assert first.status_code == again.status_code == 200
    assert again.json() == {"received": True, "event_id": "evt_same", "duplicate": True}
    assert (await harness.payment(p.order_id)).status == "SUCCEEDED"
    assert len(await harness.published(payments_pb2.PaymentSucceeded, p.order_id)) == 1


async def test_another_success_event_for_a_paid_payment_changes_nothing(harness):
    p = await pending_payment(harness)
    for _ in range(2):  # two distinct Stripe events saying the same thing
        payload = stripe_event(p.provider_payment_id)
        assert (await post(harness, payload, signature(payload))).status_code == 200
    assert len(await harness.published(payments_pb2.PaymentSucceeded, p.order_id)) == 1


async def test_failed_after_succeeded_does_not_undo_the_success(harness):
    p = await pending_payment(harness)
    ok = stripe_event(p.provider_payment_id, "payment_intent.succeeded")
    late_failure = stripe_event(p.provider_payment_id, "payment_intent.payment_failed")
    assert (await post(harness, ok, signature(ok))).status_code == 200
    assert (await post(harness, late_failure, signature(late_failure))).status_code == 200
    assert (await harness.payment(p.order_id)).status == "SUCCEEDED"
    assert await harness.published(payments_pb2.PaymentFailed, p.order_id) == []
    assert await harness.outbox_types(p.order_id) == ["PaymentRequested", "PaymentSucceeded"]


async def test_failure_publishes_payment_failed_with_the_reason(harness):
    p = await pending_payment(harness)
    payload = stripe_event(p.provider_payment_id, "payment_intent.payment_failed")
    assert (await post(harness, payload, signature(payload))).status_code == 200
    assert (await harness.payment(p.order_id)).status == "FAILED"
    [ev] = await harness.published(payments_pb2.PaymentFailed, p.order_id)
    assert ev.reason == "Your card was declined."


async def test_success_after_failure_is_refunded_not_paid(harness):
    p = await pending_payment(harness)
    failed = stripe_event(p.provider_payment_id, "payment_intent.payment_failed")
    late_success = stripe_event(p.provider_payment_id, "payment_intent.succeeded")
    assert (await post(harness, failed, signature(failed))).status_code == 200
    assert (await post(harness, late_success, signature(late_success))).status_code == 200
    await harness.wait_payment(p.order_id, "REFUNDED")  # refunded by the provider-call loop
    assert await harness.outbox_types(p.order_id) == ["PaymentRequested", "PaymentFailed", "PaymentRefunded"]


async def test_event_about_an_unknown_intent_is_acknowledged(harness):
    payload = stripe_event("pi_unknown")
    r = await post(harness, payload, signature(payload))
    assert r.status_code == 200


async def test_the_harness_signs_with_the_configured_secret(harness):
    assert harness.provider.webhook_secret == "whsec_test_" + "0" * 24
