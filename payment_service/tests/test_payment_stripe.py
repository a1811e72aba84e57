"""The Stripe provider through the official SDK, with only its HTTP client replaced by a recording fake."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import stripe
from mart.payments.v1 import payments_pb2
from payment_service.providers import StripeProvider, sign_payload

SECRET = "whsec_stripe_test"


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    form: dict[str, str]
    thread: int


class RecordingHTTPClient(stripe.HTTPClient):
    """Answers like api.stripe.com with canned JSON and records every request (and the thread it ran on)."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, *, _usage: Any = None):
        form = dict(parse_qsl(post_data or ""))
        self.sent.append(Sent(method, url, dict(headers or {}), form, threading.get_ident()))
        if url.endswith("/v1/payment_intents"):
            pi = "pi_3Test" + uuid.uuid4().hex[:12]
            body = {
                "id": pi,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "client_secret": f"{pi}_secret_abc",
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                "status": "requires_payment_method",
            }
        elif url.endswith("/cancel"):
            body = {"id": url.rsplit("/", 2)[-2], "object": "payment_intent", "status": "canceled"}
        elif url.endswith("/v1/refunds"):
            body = {
                "id": "re_3Test",
                "object": "refund",
                "payment_intent": form["payment_intent"],
                "status": "succeeded",
            }
        else:
            return json.dumps({"error": {"type": "invalid_request_error", "message": "unexpected"}}), 404, {}
        return json.dumps(body), 200, {"Request-Id": "req_test"}

    def request_stream(self, *args: Any, **kwargs: Any):
        raise NotImplementedError

    def close(self) -> None:
        pass


def stripe_provider() -> tuple[StripeProvider, RecordingHTTPClient]:
    http = RecordingHTTPClient()
    return StripeProvider("sk_test_123", SECRET, http_client=http, max_network_retries=0), http


async def test_create_intent_sends_amount_currency_metadata_and_idempotency_key_off_the_loop():
    provider, http = stripe_provider()
    order_id, payment_id, user_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    loop_thread = threading.get_ident()
    intent = await provider.create_intent(
        payment_id=payment_id, order_id=order_id, user_id=user_id, amount_cents=4200, currency="EUR"
    )
    [sent] = http.sent
    assert sent.method == "post" and sent.url == "https://api.stripe.com/v1/payment_intents"
    assert sent.headers["Idempotency-Key"] == f"order-{order_id}"
    assert sent.headers["Authorization"] == "Bearer sk_test_123"
    assert sent.form["amount"] == "4200" and sent.form["currency"] == "eur"
    assert sent.form["metadata[order_id]"] == str(order_id)
    assert sent.form["metadata[payment_id]"] == str(payment_id)
    assert sent.thread != loop_thread  # the blocking SDK ran in a worker thread
    assert intent.provider_payment_id.startswith("pi_3Test") and intent.client_secret.endswith("_secret_abc")


async def test_refund_and_cancel_carry_their_idempotency_keys():
    provider, http = stripe_provider()
    payment_id, order_id = uuid.uuid4(), uuid.uuid4()
    refund_id = await provider.refund("pi_1", payment_id=payment_id, order_id=order_id)
    await provider.cancel_intent("pi_2", payment_id=payment_id)
    refund, cancel = http.sent
    assert refund_id == "re_3Test"
    assert refund.url.endswith("/v1/refunds") and refund.form["payment_intent"] == "pi_1"
    assert refund.headers["Idempotency-Key"] == f"refund-{payment_id}"
    assert cancel.url.endswith("/v1/payment_intents/pi_2/cancel")
    assert cancel.headers["Idempotency-Key"] == f"cancel-{payment_id}"
    assert {refund.thread, cancel.thread}.isdisjoint({threading.get_ident()})


async def test_event_loop_stays_free_while_stripe_answers_slowly():
    provider, http = stripe_provider()
    original = http.request

    def slow(*args: Any, **kwargs: Any):
        time.sleep(0.3)
        return original(*args, **kwargs)

    http.request = slow  # type: ignore[method-assign]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await provider.refund("pi_1", payment_id=uuid.uuid4(), order_id=uuid.uuid4())
    task.cancel()
    assert ticks >= 10


async def test_the_service_with_the_stripe_provider(harness_factory):
    provider, http = stripe_provider()
    async with harness_factory(provider=provider, stripe_webhook_secret=SECRET) as h:
        order_id = await h.order_awaiting_payment(total_cents=990)
        p = await h.wait_payment(order_id)
        assert p.provider == "stripe" and p.client_secret == f"{p.provider_payment_id}_secret_abc"
        [ev] = await h.published(payments_pb2.PaymentRequested, order_id)
        assert ev.client_secret == p.client_secret and ev.provider == "stripe"
        assert http.sent[0].headers["Idempotency-Key"] == f"order-{order_id}"

        # Simulation does not exist with the real provider.
        r = await h.client.post(f"/payments/{p.id}/simulate", json={"outcome": "succeeded"}, headers=h.auth())
        assert r.status_code == 404

        payload = json.dumps(
            {
                "id": "evt_1",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(time.time()),
                "data": {
                    "object": {"id": p.provider_payment_id, "object": "payment_intent", "status": "succeeded"}
                },
            }
        )
        r = await h.client.post(
            "/webhook", content=payload, headers={"Stripe-Signature": sign_payload(payload, SECRET)}
        )
        assert r.status_code == 200, r.text
        await h.wait_payment(order_id, "SUCCEEDED")

        await h.order_cancelled(order_id, was_paid=True)
        refunded = await h.wait_payment(order_id, "REFUNDED")
        assert refunded.refund_id == "re_3Test"
        refund = http.sent[-1]
        assert refund.url.endswith("/v1/refunds") and refund.headers["Idempotency-Key"] == f"refund-{p.id}"
        assert refund.form["payment_intent"] == p.provider_payment_id
        assert await h.outbox_types(order_id) == ["PaymentRequested", "PaymentSucceeded", "PaymentRefunded"]


async def test_unpaid_cancel_cancels_the_stripe_intent(harness_factory):
    provider, http = stripe_provider()
    async with harness_factory(provider=provider, stripe_webhook_secret=SECRET) as h:
        order_id = await h.order_awaiting_payment()
        p = await h.wait_payment(order_id)
        await h.order_cancelled(order_id, was_paid=False)
        await h.wait_payment(order_id, "FAILED")
        assert http.sent[-1].url.endswith(f"/v1/payment_intents/{p.provider_payment_id}/cancel")
