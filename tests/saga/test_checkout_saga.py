"""The checkout saga end to end (docs/saga.md), through HTTP, in both run modes:

- ``embedded``: SQLite files + one shared in-process bus;
- ``distributed``: a PostgreSQL database per service + a KafkaBus per service (one topic namespace).

product-service, inventory-service, order-service and payment-service run as real apps (lifespan, outbox
relays, subscribers, periodic jobs); payments go through the fake provider's ``/simulate``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from inventory_service.main import create_app as inventory_app
from inventory_service.settings import InventorySettings
from mart_testkit.fixtures import eventually, running
from order_service.main import create_app as order_app
from order_service.models import CatalogProduct
from order_service.settings import OrderSettings
from payment_service.main import create_app as payment_app
from payment_service.settings import PaymentSettings
from product_service.main import create_app as product_app
from product_service.settings import ProductSettings
from sqlalchemy import inspect, text

from mart_common import contracts

pytestmark = pytest.mark.e2e

ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}
WAIT = 60.0  # every wait is bounded, Kafka mode included
FINAL_OR_WAITING = {"REJECTED", "CANCELLED", "DELIVERED", "AWAITING_PAYMENT", "PAID", "SHIPPED"}


class Mart:
    """Four services wired to one bus (or one Kafka namespace), with HTTP clients and tokens."""

    def __init__(self, mode: str, new_database, make_bus, jwt_keys, tmp_path) -> None:
        self.mode = mode
        self._new_database = new_database
        self._make_bus = make_bus
        self.jwt = jwt_keys
        self.tmp_path = tmp_path
        self.stack = AsyncExitStack()
        self.admin = jwt_keys.headers(uuid.uuid4(), "admin")
        self.customer_id = uuid.uuid4()
        self.customer = jwt_keys.headers(self.customer_id, "customer")
        self.runtimes: dict[str, Any] = {}
        self.buses: list[Any] = []
        self._shared_bus = None

    async def _bus(self):
        if self.mode == "embedded":
            if self._shared_bus is None:
                self._shared_bus = self._make_bus("inprocess")
                await self._shared_bus.start()
                self.stack.push_async_callback(self._shared_bus.stop)
                self.buses.append(self._shared_bus)
            return self._shared_bus
        bus = self._make_bus("kafka")
        await bus.start()
        self.stack.push_async_callback(bus.stop)
        self.buses.append(bus)
        return bus

    async def _start(self, name: str, factory, settings_cls, **overrides) -> httpx.AsyncClient:
        db_kind = "sqlite" if self.mode == "embedded" else "postgres"
        settings = settings_cls(
            database_url=await self._new_database(db_kind),
            data_dir=self.tmp_path / name,
            event_bus="inprocess" if self.mode == "embedded" else "kafka",
            outbox_poll_interval_s=0.1,
            log_json=True,
            log_level="WARNING",
            **overrides,
        )
        app = factory(settings, bus=await self._bus(), token_verifier=self.jwt.verifier())
        client = await self.stack.enter_async_context(running(app))
        self.runtimes[name] = app.state.runtime
        return client

    async def start(self, **order_settings: Any) -> Mart:
        self.products = await self._start("product", product_app, ProductSettings)
        self.inventory = await self._start("inventory", inventory_app, InventorySettings)
        self.orders = await self._start("order", order_app, OrderSettings, **order_settings)
        self.payments = await self._start("payment", payment_app, PaymentSettings)
        return self

    # --- catalog and stock -------------------------------------------------------------------

    async def product(self, *, price_cents: int = 1000, stock: int = 10) -> str:
        """Create a product through product-service, wait for inventory and the order read model to
        know it, and put ``stock`` units on hand."""
        sku = f"SKU-{uuid.uuid4().hex[:10]}"
        r = await self.products.post(
            "/products",
            json={"sku": sku, "name": f"Widget {sku}", "price_cents": price_cents, "currency": "USD"},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]

        async def known() -> bool:
            if (await self.inventory.get(f"/stock/{pid}")).status_code != 200:
                return False
            async with self.runtimes["order"].db.session() as s:
                return await s.get(CatalogProduct, uuid.UUID(pid)) is not None

        await eventually(known, timeout=WAIT, message=f"product {pid} reached inventory and orders")
        if stock:
            r = await self.inventory.post(
                f"/stock/{pid}/adjustments",
                json={"delta": stock, "reason": "initial stock"},
                headers=self.admin,
            )
            assert r.status_code == 201, r.text
        return pid

    async def stock(self, pid: str) -> tuple[int, int]:
        body = (await self.inventory.get(f"/stock/{pid}")).json()
        return body["on_hand"], body["reserved"]

    # --- orders and payments -----------------------------------------------------------------

    async def place(self, *lines: tuple[str, int], headers=None, key: str | None = None) -> httpx.Response:
        h = dict(headers or self.customer)
        if key:
            h["Idempotency-Key"] = key
        body = {"items": [{"product_id": p, "quantity": q} for p, q in lines], "shipping_address": ADDRESS}
        return await self.orders.post("/orders", json=body, headers=h)

    async def order(self, order_id: str) -> dict[str, Any]:
        r = await self.orders.get(f"/orders/{order_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(self, order_id: str, *statuses: str) -> dict[str, Any]:
        async def check():
            body = await self.order(order_id)
            return body if body["status"] in statuses else None

        return await eventually(check, timeout=WAIT, interval=0.1, message=f"order {order_id} in {statuses}")

    async def payment(self, order_id: str, *statuses: str) -> dict[str, Any]:
        async def check():
            page = (await self.payments.get(f"/payments?order_id={order_id}", headers=self.admin)).json()
            items = page.get("items") or []
            return items[0] if items and (not statuses or items[0]["status"] in statuses) else None

        return await eventually(
            check, timeout=WAIT, interval=0.1, message=f"payment of {order_id} in {statuses}"
        )

    async def pay(self, order_id: str, outcome: str = "succeeded") -> None:
        payment = await self.payment(order_id, "REQUIRES_PAYMENT")
        r = await self.payments.post(
            f"/payments/{payment['id']}/simulate", json={"outcome": outcome}, headers=self.customer
        )
        assert r.status_code == 202, r.text

    async def stock_is(self, pid: str, on_hand: int, reserved: int) -> None:
        async def check():
            return await self.stock(pid) == (on_hand, reserved)

        await eventually(
            check, timeout=WAIT, interval=0.1, message=f"stock of {pid} == {(on_hand, reserved)}"
        )

    # --- state, for the replay test ----------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Every row of every service table (outbox: the row count; inbox left out)."""
        state: dict[str, Any] = {}
        for name, runtime in self.runtimes.items():
            async with runtime.db.engine.connect() as conn:
                tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
                for table in sorted(tables):
                    if table in {"inbox", "alembic_version"}:
                        continue
                    if table == "outbox":
                        state[f"{name}.outbox"] = (
                            await conn.execute(text("SELECT count(*) FROM outbox"))
                        ).scalar()
                        continue
                    rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
                    state[f"{name}.{table}"] = sorted(repr(tuple(r)) for r in rows)
        return state

    async def settled_snapshot(self) -> dict[str, Any]:
        """A snapshot once all outboxes are published and two snapshots a second apart agree."""

        async def published() -> bool:
            for runtime in self.runtimes.values():
                count, _ = await runtime.relay.unpublished()
                if count:
                    return False
            return True

        await eventually(published, timeout=WAIT, message="all outboxes published")
        previous = await self.snapshot()
        for _ in range(int(WAIT)):
            await asyncio.sleep(1.0)
            current = await self.snapshot()
            if current == previous:
                return current
            previous = current
        raise AssertionError("the services did not settle")


MODES = ["embedded", pytest.param("distributed", marks=[pytest.mark.postgres, pytest.mark.kafka])]


@pytest.fixture(params=MODES)
async def mart(request, new_database, make_bus, jwt_keys, tmp_path):
    m = Mart(request.param, new_database, make_bus, jwt_keys, tmp_path)
    async with m.stack:
        yield m


async def test_order_reserved_paid_committed_shipped_delivered(mart):
    await mart.start()
    pid = await mart.product(price_cents=1250, stock=10)
    r = await mart.place((pid, 3))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "PENDING" and order["total_cents"] == 3750
    awaiting = await mart.wait_status(order["id"], "AWAITING_PAYMENT")
    assert awaiting["payment_deadline"]
    assert await mart.stock(pid) == (10, 3)
    payment = await mart.payment(order["id"], "REQUIRES_PAYMENT")
    assert payment["amount_cents"] == 3750 and payment["currency"] == "USD"
    await mart.pay(order["id"], "succeeded")
    paid = await mart.wait_status(order["id"], "PAID")
    assert paid["payment_id"] == payment["id"]
    await mart.stock_is(pid, 7, 0)  # committed: the units left the shelf
    assert (await mart.orders.post(f"/orders/{order['id']}/ship", headers=mart.admin)).json()[
        "status"
    ] == "SHIPPED"
    done = (await mart.orders.post(f"/orders/{order['id']}/deliver", headers=mart.admin)).json()
    assert [h["status"] for h in done["history"]] == [
        "PENDING",
        "AWAITING_PAYMENT",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]
    assert (await mart.orders.post(f"/orders/{order['id']}/cancel", headers=mart.customer)).status_code == 409


async def test_out_of_stock_is_rejected_with_nothing_reserved(mart):
    await mart.start()
    plenty = await mart.product(stock=10)
    scarce = await mart.product(stock=1)
    order = (await mart.place((plenty, 2), (scarce, 2))).json()
    rejected = await mart.wait_status(order["id"], "REJECTED")
    assert scarce in rejected["history"][-1]["reason"] and plenty not in rejected["history"][-1]["reason"]
    assert await mart.stock(plenty) == (10, 0)
    assert await mart.stock(scarce) == (1, 0)
    r = await mart.payments.get(f"/payments?order_id={order['id']}", headers=mart.admin)
    assert r.json()["total"] == 0  # no payment is ever requested for a rejected order


async def test_payment_failed_cancels_and_releases(mart):
    await mart.start()
    pid = await mart.product(stock=5)
    order = (await mart.place((pid, 2))).json()
    await mart.wait_status(order["id"], "AWAITING_PAYMENT")
    await mart.pay(order["id"], "failed")
    cancelled = await mart.wait_status(order["id"], "CANCELLED")
    assert "payment failed" in cancelled["history"][-1]["reason"]
    await mart.stock_is(pid, 5, 0)
    assert (await mart.payment(order["id"]))["status"] == "FAILED"


async def test_cancel_after_payment_refunds_and_restocks(mart):
    await mart.start()
    pid = await mart.product(stock=10)
    order = (await mart.place((pid, 4))).json()
    await mart.wait_status(order["id"], "AWAITING_PAYMENT")
    await mart.pay(order["id"])
    await mart.wait_status(order["id"], "PAID")
    await mart.stock_is(pid, 6, 0)
    r = await mart.orders.post(f"/orders/{order['id']}/cancel", headers=mart.customer)
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    await mart.payment(order["id"], "REFUNDED")
    await mart.stock_is(pid, 10, 0)  # the committed units are back on hand ("restock" in the trail)
    trail = (await mart.inventory.get(f"/stock/{pid}/adjustments", headers=mart.admin)).json()
    assert sorted((m["kind"], m["delta"]) for m in trail["items"]) == [
        ("adjustment", 10),
        ("restock", 4),
        ("sale", -4),
    ]


async def test_cancel_before_payment_releases_and_voids(mart):
    await mart.start()
    pid = await mart.product(stock=3)
    order = (await mart.place((pid, 3))).json()
    await mart.wait_status(order["id"], "AWAITING_PAYMENT")
    await mart.payment(order["id"], "REQUIRES_PAYMENT")
    r = await mart.orders.post(f"/orders/{order['id']}/cancel", headers=mart.customer)
    assert r.json()["status"] == "CANCELLED"
    await mart.stock_is(pid, 3, 0)
    await mart.payment(order["id"], "FAILED")  # the open payment is voided, never charged


async def test_payment_window_expiry_cancels_and_releases(mart):
    await mart.start(payment_window_s=1.0, payment_check_interval_s=0.2)
    pid = await mart.product(stock=4)
    order = (await mart.place((pid, 4))).json()
    cancelled = await mart.wait_status(order["id"], "CANCELLED")
    assert cancelled["history"][-1]["reason"] == "payment window expired"
    await mart.stock_is(pid, 4, 0)


async def test_idempotency_key_returns_the_first_order(mart):
    await mart.start()
    pid = await mart.product(stock=10)
    first = await mart.place((pid, 1), key="checkout-1")
    again = await mart.place((pid, 1), key="checkout-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = await mart.place((pid, 2), key="checkout-1")
    assert other.status_code == 422 and other.headers["content-type"].startswith("application/problem+json")
    await mart.wait_status(first.json()["id"], "AWAITING_PAYMENT")
    await mart.stock_is(pid, 10, 1)  # one order, one reservation
    assert (await mart.orders.get("/orders", headers=mart.customer)).json()["total"] == 1


async def test_replaying_every_topic_changes_nothing(mart):
    await mart.start()
    pid = await mart.product(stock=5)
    paid = (await mart.place((pid, 2))).json()["id"]
    rejected = (await mart.place((pid, 50))).json()["id"]
    failed = (await mart.place((pid, 1))).json()["id"]
    await mart.wait_status(paid, "AWAITING_PAYMENT")
    await mart.pay(paid)
    await mart.wait_status(failed, "AWAITING_PAYMENT")
    await mart.pay(failed, "failed")
    await mart.wait_status(paid, "PAID")
    await mart.wait_status(rejected, "REJECTED")
    await mart.wait_status(failed, "CANCELLED")
    await mart.stock_is(pid, 3, 0)

    before = await mart.settled_snapshot()
    replayed = 0
    bus = mart.buses[0]
    for topic in contracts.TOPICS:
        for msg in await bus.read_topic(topic):
            for runtime in mart.runtimes.values():
                await runtime.subscriber(msg)
            replayed += 1
    assert replayed >= 15
    after = await mart.settled_snapshot()
    assert after == before


async def test_concurrent_orders_never_oversell(mart):
    await mart.start()
    pid = await mart.product(price_cents=100, stock=50)
    customers = [mart.jwt.headers(uuid.uuid4(), "customer") for _ in range(20)]

    # The stock is sampled continuously while the orders flow, by its own task: every sample out of bounds
    # is recorded (an oversell that lasts one sample is not retried away).
    samples: list[tuple[int, int]] = []
    violations: list[tuple[int, int]] = []
    sampling = asyncio.Event()

    async def sampler() -> None:
        while not sampling.is_set():
            on_hand, reserved = await mart.stock(pid)
            samples.append((on_hand, reserved))
            if not 0 <= reserved <= on_hand == 50:
                violations.append((on_hand, reserved))
            await asyncio.sleep(0.005)

    sampler_task = asyncio.create_task(sampler())
    try:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(mart.place((pid, 1), headers=customers[i % 20]) for i in range(200))
        )
        placed_s = time.monotonic() - started
        assert [r.status_code for r in responses].count(201) == 200
        ids = [r.json()["id"] for r in responses]

        async def statuses_now() -> list[str]:
            found: list[str] = []
            for offset in (0, 100):
                page = (
                    await mart.orders.get(f"/orders?limit=100&offset={offset}", headers=mart.admin)
                ).json()
                found += [o["status"] for o in page["items"]]
            return found

        # Bounded waits that each need progress (≤ 60 s without any order being decided fails the test).
        decided = -1
        while decided < 200:
            before = decided

            async def progressed(before: int = before) -> list[str] | None:
                now = await statuses_now()
                count = len(now) - now.count("PENDING")
                return now if count > before else None

            statuses = await eventually(
                progressed, timeout=WAIT, interval=0.5, message="orders being decided"
            )
            decided = len(statuses) - statuses.count("PENDING")
    finally:
        sampling.set()
        await sampler_task
    assert samples and not violations, f"stock out of bounds in {len(violations)} of {len(samples)} samples"
    print(
        f"[{mart.mode}] 200 orders placed in {placed_s:.1f}s, "
        f"all decided after {time.monotonic() - started:.1f}s; stock sampled {len(samples)} times"
    )
    assert len(statuses) == 200
    assert set(statuses) <= FINAL_OR_WAITING
    assert statuses.count("AWAITING_PAYMENT") == 50
    assert statuses.count("REJECTED") == 150
    on_hand, reserved = await mart.stock(pid)
    assert (on_hand, reserved) == (50, 50)
    assert len(set(ids)) == 200
