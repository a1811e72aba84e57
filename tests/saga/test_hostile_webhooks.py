"""Stripe's webhook as it really behaves, against the real webhook path (``POST /webhook`` of the payment
service, signed Stripe-format events) and the real saga: product, inventory, order and payment services on
SQLite + one in-process bus, the payment service on the real ``stripe`` SDK pointed at a Stripe-like API
(``FakeStripeAPI``, which also holds the customer's charges and the refunds: the money).

Stripe delivers an event at least once, in no guaranteed order, possibly long after the fact, and anyone can
post to the endpoint. Checked: duplicates (one after another and at once) are applied once; a success is
never undone by a ``processing`` or ``payment_failed`` arriving after it; a success arriving after the
payment window cancelled the order is refunded automatically; an event signed longer ago than the tolerance
is refused and leaves no trace. In every case: the order is PAID at most once, and no money stays with the
mart for an order that is not paid.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from mart_common.messaging import outbox_table
from mart_testkit.fake_stripe import FakeStripeAPI
from payment_service.providers import sign_payload
from sqlalchemy import select

from . import test_payment_provider_failures as provider_failures
from .test_payment_provider_failures import SECRET, StripeMart

stripe_mart = provider_failures.stripe_mart  # the fixture: the four services on the Stripe SDK

pytestmark = pytest.mark.e2e


class Stripe:
    """Stripe's side: the customer's charge and the events Stripe sends about an intent."""

    def __init__(self, api: FakeStripeAPI, mart: StripeMart) -> None:
        self.api, self.mart = api, mart

    @staticmethod
    def event(event_type: str, intent: str, **obj: Any) -> dict[str, Any]:
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": {"id": intent, "object": "payment_intent", **obj}},
        }

    async def deliver(self, event: dict[str, Any], *, signed_at: int | None = None) -> httpx.Response:
        payload = json.dumps(event)
        headers = {
            "Stripe-Signature": sign_payload(payload, SECRET, signed_at),
            "Content-Type": "application/json",
        }
        return await self.mart.payments.post("/webhook", content=payload, headers=headers)


async def _awaiting_payment(mart: StripeMart, stock: int = 3) -> tuple[str, dict[str, Any], str]:
    """A product, and an order of it waiting for payment: (product id, order, PaymentIntent id)."""
    pid = await mart.product(stock=stock)
    order = await mart.place(pid, 1)
    await mart.wait_order(order["id"], "AWAITING_PAYMENT")
    payment = await mart.wait_payment(order["id"], "REQUIRES_PAYMENT")
    return pid, order, payment["client_secret"].split("_secret_")[0]


async def _published(mart: StripeMart, order_id: str) -> list[str]:
    """The payment service's events about the order, in the order recorded (its outbox)."""
    async with mart.runtimes["payment"].db.session() as s:
        rows = (
            await s.execute(select(outbox_table.c.ce_type, outbox_table.c.key).order_by(outbox_table.c.seq))
        ).all()
    return [r.ce_type.rsplit(".", 1)[1] for r in rows if r.key == order_id]


def _statuses(order: dict[str, Any]) -> list[str]:
    return [h["status"] for h in order["history"]]


async def test_duplicate_and_out_of_order_events_pay_once_and_never_undo_a_payment(stripe_mart) -> None:
    with FakeStripeAPI() as api:
        mart = await stripe_mart.start(api.url)
        stripe = Stripe(api, mart)
        pid, order, intent = await _awaiting_payment(mart)
        api.charge(intent)
        succeeded = stripe.event("payment_intent.succeeded", intent, status="succeeded")
        # Delivered again and again: one after another, then several at once.
        answers = [await stripe.deliver(succeeded) for _ in range(3)]
        answers += await asyncio.gather(*(stripe.deliver(succeeded) for _ in range(4)))
        assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
        assert [r.json()["duplicate"] for r in answers].count(False) == 1
        # Stripe does not promise order: "processing" and a failure arrive after the success.
        late = [
            stripe.event("payment_intent.processing", intent, status="processing"),
            stripe.event(
                "payment_intent.payment_failed",
                intent,
                status="requires_payment_method",
                last_payment_error={"code": "card_declined", "message": "Your card was declined."},
            ),
        ]
        for event in late:
            r = await stripe.deliver(event)
            assert r.status_code == 200 and r.json()["duplicate"] is False, r.text

        paid = await mart.wait_order(order["id"], "PAID")
        payment = await mart.wait_payment(order["id"], "SUCCEEDED")
        assert payment["failure_reason"] is None
        # Recorded when each webhook answered: the success once, no failure, no refund.
        assert await _published(mart, order["id"]) == ["PaymentRequested", "PaymentSucceeded"]
        assert _statuses(paid).count("PAID") == 1
        await mart.stock_is(pid, 2, 0)
        assert api.charges() == [intent] and api.created_refunds() == []


async def test_a_success_after_the_payment_window_cancelled_the_order_is_refunded(stripe_mart) -> None:
    with FakeStripeAPI() as api:
        mart = await stripe_mart.start(api.url, payment_window_s=1.0, payment_check_interval_s=0.1)
        stripe = Stripe(api, mart)
        pid, order, intent = await _awaiting_payment(mart)
        # Nobody pays in time: the window cancels the order, the stock comes back, the intent is cancelled.
        cancelled = await mart.wait_order(order["id"], "CANCELLED")
        await mart.stock_is(pid, 3, 0)
        failed = await mart.wait_payment(order["id"], "FAILED")
        assert failed["failure_reason"] == "order cancelled"
        # ...but the customer's payment had gone through at Stripe, whose event comes late (twice).
        api.charge(intent)
        event = stripe.event("payment_intent.succeeded", intent, status="succeeded")
        for _ in range(2):
            r = await stripe.deliver(event)
            assert r.status_code == 200, r.text
        refunded = await mart.wait_payment(order["id"], "REFUNDED")
        [refund] = api.created_refunds()
        assert refund["payment_intent"] == intent
        assert {r.idempotency_key for r in api.sent("refund")} == {f"refund-{refunded['id']}"}
        assert [r.path for r in api.sent("cancel")] == [f"/v1/payment_intents/{intent}/cancel"]
        # The order stays cancelled, never paid; what was published says refunded, never succeeded.
        after = (await mart.orders.get(f"/orders/{order['id']}", headers=mart.admin)).json()
        assert after["status"] == "CANCELLED" and "PAID" not in _statuses(after)
        assert after["history"] == cancelled["history"]
        assert await _published(mart, order["id"]) == ["PaymentRequested", "PaymentFailed", "PaymentRefunded"]


async def test_an_event_signed_longer_ago_than_the_tolerance_is_refused_without_a_trace(stripe_mart) -> None:
    with FakeStripeAPI() as api:
        mart = await stripe_mart.start(api.url)
        stripe = Stripe(api, mart)
        _pid, order, intent = await _awaiting_payment(mart)
        tolerance = mart.runtimes["payment"].settings.webhook_tolerance_s
        event = stripe.event("payment_intent.succeeded", intent, status="succeeded")
        # A captured delivery replayed later: its signature's timestamp is older than the tolerance.
        r = await stripe.deliver(event, signed_at=int(time.time()) - tolerance - 5)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/invalid-signature")
        assert (await mart.wait_payment(order["id"], "REQUIRES_PAYMENT"))["status"] == "REQUIRES_PAYMENT"
        assert await _published(mart, order["id"]) == ["PaymentRequested"]
        # Not remembered as seen: Stripe's own retry, signed now, is applied.
        api.charge(intent)
        r = await stripe.deliver(event)
        assert r.status_code == 200 and r.json() == {
            "received": True,
            "event_id": event["id"],
            "duplicate": False,
        }
        await mart.wait_order(order["id"], "PAID")
