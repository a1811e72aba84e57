"""The order events the payment service handles, and the payment events it publishes in response."""

from __future__ import annotations

import uuid

from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart_common.messaging import Envelope, outbox_table
from sqlalchemy import select

from mart_common import contracts


async def test_awaiting_payment_creates_one_payment_and_publishes_payment_requested(harness):
    order_id = await harness.order_awaiting_payment(total_cents=1999)
    p = await harness.wait_payment(order_id)
    assert (
        p.amount_cents == 1999
        and p.currency == "USD"
        and p.provider == "fake"
        and p.user_id == harness.customer
    )
    assert p.provider_payment_id.startswith("pi_fake_")
    assert p.client_secret.startswith(p.provider_payment_id + "_secret_")
    [ev] = await harness.published(payments_pb2.PaymentRequested, order_id)
    assert ev.payment_id == str(p.id) and ev.client_secret == p.client_secret and ev.amount_cents == 1999
    assert ev.provider == "fake" and ev.user_id == str(harness.customer)


async def test_duplicate_awaiting_payment_never_opens_a_second_payment(harness):
    order_id = uuid.uuid4()
    for _ in range(
        3
    ):  # three distinct deliveries (a re-published event): the inbox alone would not stop them
        await harness.order_awaiting_payment(order_id)
    first = await harness.wait_payment(order_id)
    await harness.all_processed()  # the three deliveries went through the handler
    assert len(await harness.published(payments_pb2.PaymentRequested, order_id)) == 1
    assert (await harness.payment(order_id)).id == first.id


async def test_cancel_of_a_paid_order_refunds(harness):
    order_id = await harness.order_awaiting_payment()
    p = await harness.wait_payment(order_id)
    r = await harness.client.post(
        f"/payments/{p.id}/simulate", json={"outcome": "succeeded"}, headers=harness.auth()
    )
    assert r.status_code == 202
    await harness.order_cancelled(order_id, was_paid=True)
    refunded = await harness.wait_payment(order_id, "REFUNDED")
    assert refunded.refund_id == f"re_fake_{p.id.hex}"
    [ev] = await harness.published(payments_pb2.PaymentRefunded, order_id)
    assert ev.amount_cents == p.amount_cents and ev.payment_id == str(p.id)
    assert await harness.outbox_types(order_id) == ["PaymentRequested", "PaymentSucceeded", "PaymentRefunded"]


async def test_cancel_of_an_unpaid_order_fails_the_payment_and_a_late_success_is_refunded(harness):
    order_id = await harness.order_awaiting_payment()
    p = await harness.wait_payment(order_id)
    await harness.order_cancelled(order_id, was_paid=False)
    failed = await harness.wait_payment(order_id, "FAILED")
    assert failed.failure_reason == "order cancelled"
    [ev] = await harness.published(payments_pb2.PaymentFailed, order_id)
    assert ev.reason == "order cancelled"
    # The customer completes the (already voided) payment anyway: charged for a cancelled order -> refunded.
    provider = harness.provider
    _, payload, sig = provider.build_event(
        outcome="succeeded",
        provider_payment_id=p.provider_payment_id,
        payment_id=p.id,
        order_id=order_id,
        amount_cents=p.amount_cents,
        currency=p.currency,
    )
    r = await harness.client.post("/webhook", content=payload, headers={"Stripe-Signature": sig})
    assert r.status_code == 200
    await harness.wait_payment(order_id, "REFUNDED")  # refunded by the provider-call loop, after the commit
    assert await harness.published(payments_pb2.PaymentSucceeded, order_id) == []
    assert await harness.outbox_types(order_id) == ["PaymentRequested", "PaymentFailed", "PaymentRefunded"]


async def test_cancel_before_awaiting_payment_means_no_payment_is_ever_opened(harness):
    order_id = uuid.uuid4()
    await harness.order_cancelled(order_id, was_paid=False)
    await harness.order_awaiting_payment(order_id)
    await harness.all_processed()  # both events went through the handler, in this order (same key)
    assert await harness.payment(order_id) is None


async def test_redelivered_cancel_refunds_once(harness):
    order_id = await harness.order_awaiting_payment()
    p = await harness.wait_payment(order_id)
    await harness.client.post(
        f"/payments/{p.id}/simulate", json={"outcome": "succeeded"}, headers=harness.auth()
    )
    await harness.order_cancelled(order_id, was_paid=True)
    await harness.order_cancelled(order_id, was_paid=True)
    await harness.wait_payment(order_id, "REFUNDED")
    await harness.all_processed()  # the second cancel went through the handler too
    assert len(await harness.published(payments_pb2.PaymentRefunded, order_id)) == 1


async def test_payment_requested_continues_the_correlation_and_trace_of_the_event_it_answers(harness):
    """The provider call runs after the handler's commit; the event it records still carries the
    correlation id and trace of the OrderAwaitingPayment that caused it (logs and traces stay joined)."""
    order_id = uuid.uuid4()
    trace_id = uuid.uuid4().hex
    event = orders_pb2.OrderAwaitingPayment(
        order_id=str(order_id), user_id=str(harness.customer), total_cents=500, currency="USD"
    )
    envelope = Envelope.new(
        type=contracts.ce_type(event),
        source="order-service",
        topic=contracts.topic_for(event),
        key=str(order_id),
        payload=event.SerializeToString(),
        correlation_id="checkout-7",
        traceparent=f"00-{trace_id}-{'1' * 16}-01",
    )
    await harness.bus.publish(envelope.to_bus())
    await harness.wait_payment(order_id)
    async with harness.db.session() as s:
        [headers] = (
            await s.execute(
                select(outbox_table.c.headers).where(
                    outbox_table.c.ce_type == contracts.ce_type(payments_pb2.PaymentRequested),
                    outbox_table.c.key == str(order_id),
                )
            )
        ).scalars()
    assert headers["correlation_id"] == "checkout-7"
    assert headers["traceparent"].split("-")[1] == trace_id
