"""Inventory rules on both database backends: all-or-nothing reservations, commit, release, restock,
expiry, low-stock crossings, idempotency by inbox and by state, and no overselling under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from inventory_service.models import Reservation, Stock
from mart.orders.v1 import orders_pb2
from mart.products.v1 import products_pb2
from mart.stock.v1 import stock_pb2
from mart_common.clock import utcnow
from mart_common.problems import NotFound

from inventory_service import services


async def test_product_created_makes_stock_at_zero_and_is_idempotent(inventory):
    pid = uuid.uuid4()
    event = products_pb2.ProductCreated(product=products_pb2.Product(product_id=str(pid), version=1))
    await inventory.feed(event)
    await inventory.feed(event)  # another delivery with another event id: still one row at 0
    assert await inventory.stock(pid) == (0, 0)
    assert (await inventory.client.get(f"/stock/{uuid.uuid4()}")).status_code == 404


async def test_reservation_takes_all_lines_or_none(inventory):
    a = await inventory.product(10)
    b = await inventory.product(2)
    unknown = uuid.uuid4()
    order = uuid.uuid4()
    await inventory.place(order, (a, 3), (b, 5), (unknown, 1))
    assert await inventory.stock(a) == (10, 0)
    assert await inventory.stock(b) == (2, 0)
    assert await inventory.reservation(order) == "REJECTED"
    [rejected] = await inventory.published(stock_pb2.StockRejected)
    by_product = {line.product_id: line for line in rejected.lines}
    assert set(by_product) == {str(b), str(unknown)}  # only the lines that do not fit
    assert by_product[str(b)].reason == stock_pb2.REJECTION_REASON_INSUFFICIENT_STOCK
    assert (by_product[str(b)].requested, by_product[str(b)].available) == (5, 2)
    assert by_product[str(unknown)].reason == stock_pb2.REJECTION_REASON_UNKNOWN_PRODUCT
    assert await inventory.published(stock_pb2.StockReserved) == []

    ok = uuid.uuid4()
    await inventory.place(ok, (a, 3), (b, 2), (a, 1))  # duplicate product lines are summed
    assert await inventory.stock(a) == (10, 4)
    assert await inventory.stock(b) == (2, 2)
    [reserved] = await inventory.published(stock_pb2.StockReserved)
    assert reserved.order_id == str(ok)
    assert reserved.expires_at.ToDatetime() > utcnow().replace(tzinfo=None)


async def test_commit_on_paid_then_restock_on_cancel(inventory):
    pid = await inventory.product(10)
    order = uuid.uuid4()
    await inventory.place(order, (pid, 4))
    paid = orders_pb2.OrderPaid(order_id=str(order), payment_id="p1")
    await inventory.feed(paid)
    await inventory.feed(paid)  # a second OrderPaid (new event id): idempotent by state
    assert await inventory.stock(pid) == (6, 0)
    assert await inventory.reservation(order) == "COMMITTED"
    assert len(await inventory.published(stock_pb2.StockCommitted)) == 1

    cancelled = orders_pb2.OrderCancelled(order_id=str(order), was_paid=True, payment_id="p1")
    await inventory.feed(cancelled)
    await inventory.feed(cancelled)
    assert await inventory.stock(pid) == (10, 0)
    assert await inventory.reservation(order) == "RESTOCKED"
    trail = (await inventory.client.get(f"/stock/{pid}/adjustments", headers=inventory.admin)).json()
    # Newest first, one movement per change, each with the on_hand it left.
    assert [(m["kind"], m["delta"], m["on_hand_after"]) for m in trail["items"]] == [
        ("restock", 4, 10),
        ("sale", -4, 6),
        ("adjustment", 10, 10),
    ]
    assert trail["total"] == 3


async def test_release_on_cancel_and_redelivery_changes_nothing(inventory):
    pid = await inventory.product(5)
    order = uuid.uuid4()
    placed = await inventory.place(order, (pid, 2))
    await inventory.feed(placed)  # the same event again: the inbox ignores it
    assert await inventory.stock(pid) == (5, 2)
    await inventory.feed(orders_pb2.OrderCancelled(order_id=str(order)))
    assert await inventory.stock(pid) == (5, 0)
    assert await inventory.reservation(order) == "RELEASED"
    [released] = await inventory.published(stock_pb2.StockReleased)
    assert released.reason == stock_pb2.RELEASE_REASON_ORDER_CANCELLED
    await inventory.feed(orders_pb2.OrderPaid(order_id=str(order)))  # too late: nothing committed
    assert await inventory.stock(pid) == (5, 0)


async def test_cancel_seen_before_placed_reserves_nothing(inventory):
    pid = await inventory.product(5)
    order = uuid.uuid4()
    await inventory.feed(orders_pb2.OrderCancelled(order_id=str(order)))
    await inventory.place(order, (pid, 2))
    assert await inventory.stock(pid) == (5, 0)
    assert await inventory.published(stock_pb2.StockReleased) == []


async def test_expired_reservation_is_released(inventory):
    pid = await inventory.product(5)
    order = uuid.uuid4()
    await inventory.place(order, (pid, 3))
    assert await services.release_expired_reservations(inventory.runtime.db, inventory.runtime.context) == 0
    async with inventory.runtime.db.transaction() as s:
        res = await s.get(Reservation, order)
        res.expires_at = utcnow() - timedelta(seconds=1)
    assert await services.release_expired_reservations(inventory.runtime.db, inventory.runtime.context) == 1
    assert await inventory.stock(pid) == (5, 0)
    [released] = await inventory.published(stock_pb2.StockReleased)
    assert released.reason == stock_pb2.RELEASE_REASON_RESERVATION_EXPIRED
    # Paid after expiry while the units are still there: they are taken after all.
    await inventory.feed(orders_pb2.OrderPaid(order_id=str(order)))
    assert await inventory.stock(pid) == (2, 0)
    assert await inventory.reservation(order) == "COMMITTED"


async def test_stock_low_once_per_crossing(inventory):
    pid = await inventory.product(10)
    for _ in range(3):  # 10 → 8 → 6 → 4 (crosses under 5 once)
        await inventory.place(uuid.uuid4(), (pid, 2))
    await inventory.place(uuid.uuid4(), (pid, 1))  # 3: still low, no second event
    lows = await inventory.published(stock_pb2.StockLow)
    assert len(lows) == 1
    assert (lows[0].available, lows[0].threshold) == (4, 5)
    r = await inventory.client.post(
        f"/stock/{pid}/adjustments", json={"delta": 10, "reason": "delivery"}, headers=inventory.admin
    )
    assert r.status_code == 201
    await inventory.place(uuid.uuid4(), (pid, 12))  # back above, then under again: a second crossing
    assert len(await inventory.published(stock_pb2.StockLow)) == 2


async def test_concurrent_reservations_never_oversell(inventory):
    pid = await inventory.product(50)
    other = await inventory.product(1000)
    orders = [uuid.uuid4() for _ in range(80)]
    # Mixed lock orders in the events (the service sorts them): no deadlock, no oversell.
    await asyncio.gather(
        *(
            inventory.place(o, (pid, 1), (other, 1)) if i % 2 else inventory.place(o, (other, 1), (pid, 1))
            for i, o in enumerate(orders)
        )
    )
    assert await inventory.stock(pid) == (50, 50)
    assert await inventory.stock(other) == (1000, 50)
    statuses = [await inventory.reservation(o) for o in orders]
    assert statuses.count("RESERVED") == 50 and statuses.count("REJECTED") == 30


async def test_adjustments_cannot_go_below_reserved_or_zero(inventory):
    pid = await inventory.product(5)
    await inventory.place(uuid.uuid4(), (pid, 3))
    r = await inventory.client.post(
        f"/stock/{pid}/adjustments", json={"delta": -3, "reason": "broken"}, headers=inventory.admin
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await inventory.client.post(
        f"/stock/{pid}/adjustments", json={"delta": -2, "reason": "broken"}, headers=inventory.admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["stock"] == {"product_id": str(pid), "on_hand": 3, "reserved": 3, "available": 0}
    async with inventory.runtime.db.session() as s:
        stock = await s.get(Stock, pid)
        assert (stock.on_hand, stock.reserved) == (3, 3)
    with pytest.raises(NotFound):
        async with inventory.runtime.db.transaction() as s:
            await services.adjust_stock(
                s, inventory.runtime.context, uuid.uuid4(), 1, "x", actor_id=uuid.uuid4()
            )
