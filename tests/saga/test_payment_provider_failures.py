"""The checkout saga when Stripe fails (SQLite + one in-process bus): product, inventory, order and payment
services as real apps, the payment service on the real ``stripe`` SDK pointed at a local server that
answers like Stripe's API (``mart_testkit.fake_stripe.FakeStripeAPI``).

An order whose payment cannot be created (card declined; Stripe unreachable until the retries run out)
is cancelled at once with the reason and its stock released — the payment window (15 min by default)
plays no part. A paid order cancelled while refunds fail is refunded once Stripe answers again, and its
units go back on hand.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from inventory_service.main import create_app as inventory_app
from inventory_service.settings import InventorySettings
from mart_testkit.fake_stripe import FakeStripeAPI, refused_url
from mart_testkit.fixtures import eventually, running
from order_service.main import create_app as order_app
from order_service.models import CatalogProduct
from order_service.settings import OrderSettings
from payment_service.main import create_app as payment_app
from payment_service.models import Payment
from payment_service.providers import StripeProvider, sign_payload
from payment_service.settings import PaymentSettings
from product_service.main import create_app as product_app
from product_service.settings import ProductSettings

pytestmark = pytest.mark.e2e

SECRET = "whsec_saga_local"
WAIT = 30.0
ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


class StripeMart:
    def __init__(self, new_database: Any, make_bus: Any, jwt: Any, tmp_path: Any) -> None:
        self.new_database, self.make_bus, self.jwt, self.tmp_path = new_database, make_bus, jwt, tmp_path
        self.admin = jwt.headers(uuid.uuid4(), "admin")
        self.customer = jwt.headers(uuid.uuid4(), "customer")
        self.stack = AsyncExitStack()
        self.runtimes: dict[str, Any] = {}

    async def start(self, api_base: str, **order_settings: Any) -> StripeMart:
        self.bus = self.make_bus("inprocess")
        await self.bus.start()
        self.stack.push_async_callback(self.bus.stop)
        self.products = await self._start("product", product_app, ProductSettings)
        self.inventory = await self._start("inventory", inventory_app, InventorySettings)
        self.orders = await self._start("order", order_app, OrderSettings, **order_settings)
        provider = StripeProvider(
            "sk_test_saga", SECRET, api_base=api_base, timeout_s=0.5, max_network_retries=0
        )
        self.payments = await self._start(
            "payment",
            payment_app,
            PaymentSettings,
            provider=provider,
            payment_provider="stripe",
            stripe_webhook_secret=SECRET,
            provider_retry_base_s=0.05,
            provider_retry_max_s=0.2,
            provider_max_attempts=3,
            provider_poll_interval_s=0.2,
        )
        return self

    async def _start(
        self, name: str, factory: Any, settings_cls: Any, provider: Any = None, **overrides: Any
    ):
        settings = settings_cls(
            database_url=await self.new_database("sqlite"),
            data_dir=self.tmp_path / name,
            event_bus="inprocess",
            outbox_poll_interval_s=0.05,
            log_json=True,
            log_level="WARNING",
            **overrides,
        )
        extra = {"provider": provider} if provider is not None else {}
        app = factory(settings, bus=self.bus, token_verifier=self.jwt.verifier(), **extra)
        client = await self.stack.enter_async_context(running(app))
        self.runtimes[name] = app.state.runtime
        return client

    async def product(self, stock: int) -> str:
        sku = f"SKU-{uuid.uuid4().hex[:10]}"
        r = await self.products.post(
            "/products",
            json={"sku": sku, "name": sku, "price_cents": 1000, "currency": "USD"},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]

        async def known() -> bool:
            if (await self.inventory.get(f"/stock/{pid}")).status_code != 200:
                return False
            async with self.runtimes["order"].db.session() as s:
                return await s.get(CatalogProduct, uuid.UUID(pid)) is not None

        await eventually(known, timeout=WAIT, message="product known to inventory and orders")
        r = await self.inventory.post(
            f"/stock/{pid}/adjustments", json={"delta": stock, "reason": "initial"}, headers=self.admin
        )
        assert r.status_code == 201, r.text
        return pid

    async def place(self, pid: str, quantity: int) -> dict[str, Any]:
        body = {"items": [{"product_id": pid, "quantity": quantity}], "shipping_address": ADDRESS}
        r = await self.orders.post("/orders", json=body, headers=self.customer)
        assert r.status_code == 201, r.text
        return r.json()

    async def wait_order(self, order_id: str, status: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = (await self.orders.get(f"/orders/{order_id}", headers=self.admin)).json()
            return body if body["status"] == status else None

        return await eventually(check, timeout=WAIT, interval=0.1, message=f"order {order_id} is {status}")

    async def wait_payment(self, order_id: str, status: str, check: Any = None) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            page = (await self.payments.get(f"/payments?order_id={order_id}", headers=self.admin)).json()
            items = page.get("items") or []
            ok = items and items[0]["status"] == status and (check is None or check(items[0]))
            return items[0] if ok else None

        return await eventually(
            ready, timeout=WAIT, interval=0.1, message=f"payment of {order_id} is {status}"
        )

    async def stock_is(self, pid: str, on_hand: int, reserved: int) -> None:
        async def check() -> bool:
            body = (await self.inventory.get(f"/stock/{pid}")).json()
            return (body["on_hand"], body["reserved"]) == (on_hand, reserved)

        await eventually(
            check, timeout=WAIT, interval=0.1, message=f"stock of {pid} is {(on_hand, reserved)}"
        )

    async def stripe_says_succeeded(self, intent_id: str) -> None:
        payload = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(time.time()),
                "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "succeeded"}},
            }
        )
        r = await self.payments.post(
            "/webhook", content=payload, headers={"Stripe-Signature": sign_payload(payload, SECRET)}
        )
        assert r.status_code == 200, r.text


@pytest.fixture
async def stripe_mart(new_database, make_bus, jwt_keys, tmp_path) -> AsyncIterator[StripeMart]:
    m = StripeMart(new_database, make_bus, jwt_keys, tmp_path)
    async with m.stack:
        yield m


async def test_card_declined_cancels_the_order_with_the_reason_and_releases_stock(stripe_mart):
    with FakeStripeAPI() as stripe_api:
        stripe_api.script("create", 402)
        mart = await stripe_mart.start(stripe_api.url)
        pid = await mart.product(stock=5)
        order = await mart.place(pid, 2)
        cancelled = await mart.wait_order(order["id"], "CANCELLED")
        assert cancelled["history"][-1]["reason"] == "payment failed: card declined: Your card was declined."
        await mart.stock_is(pid, 5, 0)
        payment = await mart.wait_payment(order["id"], "FAILED")
        assert payment["failure_reason"] == "card declined: Your card was declined."


async def test_stripe_unreachable_cancels_the_order_after_the_retries(stripe_mart):
    mart = await stripe_mart.start(refused_url())
    pid = await mart.product(stock=3)
    order = await mart.place(pid, 3)
    cancelled = await mart.wait_order(order["id"], "CANCELLED")
    reason = cancelled["history"][-1]["reason"]
    assert reason.startswith("payment failed: payment provider unreachable: ")
    assert reason.endswith("(gave up after 3 attempts)")
    await mart.stock_is(pid, 3, 0)
    assert cancelled["payment_deadline"]  # it was waiting for payment, and did not wait for the window


async def test_cancelled_paid_order_is_refunded_once_stripe_answers_again(stripe_mart):
    with FakeStripeAPI() as stripe_api:
        mart = await stripe_mart.start(stripe_api.url)
        pid = await mart.product(stock=4)
        order = await mart.place(pid, 4)
        await mart.wait_order(order["id"], "AWAITING_PAYMENT")
        payment = await mart.wait_payment(order["id"], "REQUIRES_PAYMENT")
        [create] = stripe_api.sent("create")
        assert create.idempotency_key == f"order-{order['id']}"
        async with mart.runtimes["payment"].db.session() as s:
            row = await s.get(Payment, uuid.UUID(payment["id"]))
        await mart.stripe_says_succeeded(row.provider_payment_id)
        await mart.wait_order(order["id"], "PAID")
        await mart.stock_is(pid, 0, 0)

        stripe_api.fail("refund", 500)
        r = await mart.orders.post(f"/orders/{order['id']}/cancel", headers=mart.customer)
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
        pending = await mart.wait_payment(order["id"], "REFUND_PENDING", lambda p: p["attempts"] >= 2)
        assert pending["last_error"].startswith("payment provider error")
        await mart.stock_is(pid, 4, 0)  # the units are back whatever the refund's fate

        stripe_api.heal("refund")
        await mart.wait_payment(order["id"], "REFUNDED")
        assert {r.idempotency_key for r in stripe_api.sent("refund")} == {f"refund-{payment['id']}"}
