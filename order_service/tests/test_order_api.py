"""Order HTTP API and event handling on both database backends: auth, validation (problem+json),
prices from the read model, Idempotency-Key, visibility, transitions, the payment window."""

from __future__ import annotations

import asyncio
import uuid

from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart.products.v1 import products_pb2
from mart.stock.v1 import stock_pb2
from mart_common.messaging import Envelope
from mart_testkit.contracts import evolved_class
from order_service.services import cancel_unpaid_orders

from .conftest import ADDRESS

PROBLEM = "application/problem+json"


async def test_place_order_prices_from_the_read_model(orders):
    a = await orders.product(1250)
    b = await orders.product(300)
    r = await orders.place((a, 2), (b, 1), (a, 1))  # duplicate lines are merged
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "PENDING"
    assert body["user_id"] == str(orders.customer_id)
    assert [(i["product_id"], i["quantity"], i["unit_price_cents"]) for i in body["items"]] == [
        (str(a), 3, 1250),
        (str(b), 1, 300),
    ]
    assert body["total_cents"] == 3 * 1250 + 300 and body["currency"] == "USD"
    assert body["shipping_address"]["country"] == "US"
    assert [h["status"] for h in body["history"]] == ["PENDING"]
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    [placed] = await orders.published(orders_pb2.OrderPlaced)
    assert placed.order_id == body["id"] and placed.total_cents == body["total_cents"]
    assert sorted((line.product_id, line.quantity) for line in placed.lines) == sorted(
        [(str(a), 3), (str(b), 1)]
    )


async def test_authentication_and_validation(orders):
    a = await orders.product()
    r = await orders.client.post(
        "/orders", json={"items": [{"product_id": str(a), "quantity": 1}], "shipping_address": ADDRESS}
    )
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert (await orders.client.get("/orders")).status_code == 401
    bad_bodies = [
        {"items": [], "shipping_address": ADDRESS},
        {"items": [{"product_id": str(a), "quantity": 0}], "shipping_address": ADDRESS},
        {"items": [{"product_id": str(a), "quantity": 101}], "shipping_address": ADDRESS},
        {"items": [{"product_id": "nope", "quantity": 1}], "shipping_address": ADDRESS},
        {
            "items": [{"product_id": str(a), "quantity": 1, "unit_price_cents": 1}],
            "shipping_address": ADDRESS,
        },
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}] * 51, "shipping_address": ADDRESS},
        {"items": [{"product_id": str(a), "quantity": 1}], "shipping_address": {"line1": "x"}},
        {"items": [{"product_id": str(a), "quantity": 1}]},
    ]
    for bad in bad_bodies:
        r = await orders.client.post("/orders", json=bad, headers=orders.customer)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith(PROBLEM)
    r = await orders.place((a, 60), (a, 41))  # merged: 101 > 100
    assert r.status_code == 422 and r.json()["type"].endswith("quantity-too-large")
    assert await orders.published(orders_pb2.OrderPlaced) == []


async def test_unknown_archived_and_mixed_currency_products_are_refused(orders):
    ok = await orders.product()
    gone = await orders.product()
    await orders.product(pid=gone, version=2, cls=products_pb2.ProductArchived, archived=True)
    unknown = uuid.uuid4()
    r = await orders.place((ok, 1), (gone, 1), (unknown, 1))
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["unknown_products"] == [str(unknown)]
    assert problem["archived_products"] == [str(gone)]
    assert str(unknown) in problem["detail"] and str(gone) in problem["detail"]
    euro = await orders.product(500, "EUR")
    r = await orders.place((ok, 1), (euro, 1))
    assert r.status_code == 422 and r.json()["type"].endswith("mixed-currencies")


async def test_read_model_applies_only_newer_versions(orders):
    pid = await orders.product(1000, version=3)
    await orders.product(2000, version=2, pid=pid, cls=products_pb2.ProductUpdated)  # stale: ignored
    r = await orders.place((pid, 1))
    assert r.json()["items"][0]["unit_price_cents"] == 1000
    await orders.product(1500, version=4, pid=pid, cls=products_pb2.ProductUpdated)
    r = await orders.place((pid, 1))
    assert r.json()["items"][0]["unit_price_cents"] == 1500


async def test_idempotency_key(orders):
    a = await orders.product()
    first = await orders.place((a, 1), key="k-1")
    again = await orders.place((a, 1), key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other_body = await orders.place((a, 2), key="k-1")
    assert other_body.status_code == 422 and other_body.headers["content-type"].startswith(PROBLEM)
    someone_else = await orders.place((a, 1), key="k-1", headers=orders.jwt.headers(uuid.uuid4(), "customer"))
    assert someone_else.status_code == 201 and someone_else.json()["id"] != first.json()["id"]
    # Concurrent retries of one request: one order.
    racing = await asyncio.gather(*(orders.place((a, 3), key="k-race") for _ in range(10)))
    assert {r.status_code for r in racing} == {201}
    assert len({r.json()["id"] for r in racing}) == 1
    assert len(await orders.published(orders_pb2.OrderPlaced)) == 3


async def test_visibility_lists_and_pagination(orders):
    a = await orders.product()
    mine = [(await orders.place((a, 1))).json()["id"] for _ in range(3)]
    stranger_id = uuid.uuid4()
    stranger = orders.jwt.headers(stranger_id, "customer")
    theirs = (await orders.place((a, 1), headers=stranger)).json()["id"]
    assert (await orders.client.get(f"/orders/{theirs}", headers=orders.customer)).status_code == 404
    assert (await orders.client.post(f"/orders/{theirs}/cancel", headers=orders.customer)).status_code == 404
    assert (await orders.client.get(f"/orders/{uuid.uuid4()}", headers=orders.customer)).status_code == 404
    page = (await orders.client.get("/orders?limit=2", headers=orders.customer)).json()
    assert page["total"] == 3 and page["limit"] == 2 and len(page["items"]) == 2
    assert {o["id"] for o in page["items"]} <= set(mine)
    everyone = (await orders.client.get("/orders", headers=orders.admin)).json()
    assert everyone["total"] == 4
    assert [o["id"] for o in everyone["items"]][0] == theirs  # newest first
    past = (await orders.client.get("/orders?offset=10", headers=orders.admin)).json()
    assert past["items"] == [] and past["total"] == 4
    by_user = (
        await orders.client.get(f"/orders?user_id={stranger_id}&status=PENDING", headers=orders.admin)
    ).json()
    assert [o["id"] for o in by_user["items"]] == [theirs]
    assert (await orders.client.get("/orders?status=NOPE", headers=orders.admin)).status_code == 422
    assert (await orders.client.get("/orders?limit=101", headers=orders.admin)).status_code == 422


async def test_transitions_over_http_and_events(orders):
    a = await orders.product(700)
    order_id = (await orders.place((a, 2))).json()["id"]
    r = await orders.client.post(f"/orders/{order_id}/ship", headers=orders.customer)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = await orders.client.post(f"/orders/{order_id}/ship", headers=orders.admin)
    assert r.status_code == 409 and r.json()["current_status"] == "PENDING"
    await orders.feed(stock_pb2.StockReserved(order_id=order_id))
    assert await orders.status(order_id) == "AWAITING_PAYMENT"
    [awaiting] = await orders.published(orders_pb2.OrderAwaitingPayment)
    assert awaiting.total_cents == 1400 and awaiting.payment_deadline.seconds > 0
    await orders.feed(payments_pb2.PaymentSucceeded(order_id=order_id, payment_id="pay-1", amount_cents=1400))
    assert await orders.status(order_id) == "PAID"
    [paid] = await orders.published(orders_pb2.OrderPaid)
    assert paid.payment_id == "pay-1" and paid.total_cents == 1400 and len(paid.lines) == 1
    r = await orders.client.post(f"/orders/{order_id}/ship", headers=orders.admin)
    assert r.status_code == 200 and r.json()["status"] == "SHIPPED"
    assert (
        await orders.client.post(f"/orders/{order_id}/cancel", headers=orders.customer)
    ).status_code == 409
    r = await orders.client.post(f"/orders/{order_id}/deliver", headers=orders.admin)
    assert r.json()["status"] == "DELIVERED"
    assert [h["status"] for h in r.json()["history"]] == [
        "PENDING",
        "AWAITING_PAYMENT",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]
    assert all(h["reason"] and h["at"] for h in r.json()["history"])
    assert len(await orders.published(orders_pb2.OrderShipped)) == 1
    assert len(await orders.published(orders_pb2.OrderDelivered)) == 1


async def test_cancel_paid_order_and_late_payment(orders):
    a = await orders.product(100)
    paid_id = (await orders.place((a, 1))).json()["id"]
    await orders.feed(stock_pb2.StockReserved(order_id=paid_id))
    await orders.feed(payments_pb2.PaymentSucceeded(order_id=paid_id, payment_id="pay-2"))
    r = await orders.client.post(f"/orders/{paid_id}/cancel", headers=orders.customer)
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    [cancelled] = await orders.published(orders_pb2.OrderCancelled)
    assert cancelled.was_paid and cancelled.payment_id == "pay-2"
    assert cancelled.previous_status == orders_pb2.ORDER_STATUS_PAID

    late_id = (await orders.place((a, 1))).json()["id"]
    await orders.feed(stock_pb2.StockReserved(order_id=late_id))
    assert (await orders.client.post(f"/orders/{late_id}/cancel", headers=orders.admin)).status_code == 200
    await orders.feed(payments_pb2.PaymentSucceeded(order_id=late_id, payment_id="pay-3"))
    assert await orders.status(late_id) == "CANCELLED"  # the payment service refunds it
    assert len(await orders.published(orders_pb2.OrderPaid)) == 1

    rejected_id = (await orders.place((a, 1))).json()["id"]
    await orders.feed(
        stock_pb2.StockRejected(
            order_id=rejected_id,
            lines=[
                stock_pb2.RejectedLine(
                    product_id=str(a),
                    requested=1,
                    available=0,
                    reason=stock_pb2.REJECTION_REASON_INSUFFICIENT_STOCK,
                )
            ],
        )
    )
    body = (await orders.client.get(f"/orders/{rejected_id}", headers=orders.customer)).json()
    assert body["status"] == "REJECTED" and "insufficient stock" in body["history"][-1]["reason"]
    assert len(await orders.published(orders_pb2.OrderRejected)) == 1


def _with_discontinued_reason(proto) -> None:
    """stock.proto of a newer inventory: RejectionReason gains REJECTION_REASON_DISCONTINUED = 3."""
    reason = next(e for e in proto.enum_type if e.name == "RejectionReason")
    assert 3 not in {v.number for v in reason.value}
    reason.value.add(name="REJECTION_REASON_DISCONTINUED", number=3)


async def test_a_rejection_reason_added_by_a_newer_inventory_still_rejects_the_order(orders):
    """An enum value this build does not know reaches its handler (not the dead-letter topic): the order is
    REJECTED with a reason a customer can read."""
    newer = evolved_class(stock_pb2, "mart.stock.v1.StockRejected", _with_discontinued_reason)
    a = await orders.product(100)
    order_id = (await orders.place((a, 2))).json()["id"]
    event = newer(order_id=order_id)
    event.lines.add(product_id=str(a), requested=2, available=0, reason=3)
    envelope = Envelope.new(
        type="mart.stock.v1.StockRejected",
        source="inventory-service",
        topic="mart.stock.v1",
        key=order_id,
        payload=event.SerializeToString(),
    )
    await orders.runtime.subscriber(envelope.to_bus())
    body = (await orders.client.get(f"/orders/{order_id}", headers=orders.customer)).json()
    assert body["status"] == "REJECTED"
    assert body["history"][-1]["reason"] == f"stock rejected: {a}: not available (requested 2, available 0)"
    [rejected] = await orders.published(orders_pb2.OrderRejected)
    assert rejected.order_id == order_id


async def test_payment_failed_and_window_expiry_cancel(orders):
    a = await orders.product(100)
    failed = (await orders.place((a, 1))).json()["id"]
    await orders.feed(stock_pb2.StockReserved(order_id=failed))
    await orders.feed(payments_pb2.PaymentFailed(order_id=failed, payment_id="p", reason="card_declined"))
    assert await orders.status(failed) == "CANCELLED"

    orders.runtime.settings.payment_window_s = 0.0  # every waiting order is now past its window
    waiting = (await orders.place((a, 1))).json()["id"]
    pending = (await orders.place((a, 1))).json()["id"]
    await orders.feed(stock_pb2.StockReserved(order_id=waiting))
    await asyncio.sleep(0.01)
    assert await cancel_unpaid_orders(orders.runtime.db) == 2
    for order_id in (waiting, pending):
        body = (await orders.client.get(f"/orders/{order_id}", headers=orders.customer)).json()
        assert body["status"] == "CANCELLED" and body["history"][-1]["reason"] == "payment window expired"
    assert await cancel_unpaid_orders(orders.runtime.db) == 0
    cancels = await orders.published(orders_pb2.OrderCancelled)
    assert len(cancels) == 3 and not any(c.was_paid for c in cancels)
