"""The customer and admin journeys through HTTP only, against the embedded mode and the local
distributed mode; plus the crash test: kill -9 the embedded mart mid-checkout, restart, nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from mart_testkit.fixtures import eventually as poll_until

from mart_cli.client import bearer
from mart_cli.credentials import load_or_create
from mart_cli.services import Endpoints

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}
SAGA_TIMEOUT = 60.0


# --- helpers -------------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = SAGA_TIMEOUT) -> Any:
    """The shared poller, tolerating a mart that is restarting (connection refused) between polls."""
    return await poll_until(
        check, timeout=timeout, interval=0.2, message=what, retry_on=(AssertionError, httpx.TransportError)
    )


def ok(response: httpx.Response, *codes: int) -> Any:
    assert response.status_code in (codes or (200,)), (
        f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:800]}"
    )
    return response.json() if response.content else None


async def login(client: httpx.AsyncClient, ep: Endpoints, email: str, password: str) -> dict[str, str]:
    body = ok(await client.post(ep.user("/auth/login"), data={"username": email, "password": password}))
    assert body["token_type"].lower() == "bearer"
    return bearer(body["access_token"])


async def new_customer(client: httpx.AsyncClient, ep: Endpoints) -> tuple[dict[str, str], dict]:
    email = f"shopper-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    user = ok(
        await client.post(
            ep.user("/auth/register"),
            json={"email": email, "password": password, "full_name": "Grace Hopper"},
        ),
        201,
    )
    assert "password" not in str(user).lower()
    return await login(client, ep, email, password), user


async def place_order(
    client: httpx.AsyncClient,
    ep: Endpoints,
    headers: dict[str, str],
    items: list[dict],
    key: str | None = None,
) -> dict:
    """POST /orders; the order service learns products from events, so a brand-new product may be
    unknown to it for a moment (422): retry that only."""
    body = {"items": items, "shipping_address": ADDRESS}
    hdrs = {**headers, "Idempotency-Key": key or uuid.uuid4().hex}

    async def _try() -> dict | None:
        r = await client.post(ep.order("/orders"), json=body, headers=hdrs)
        if r.status_code == 422:
            return None
        return ok(r, 201)

    order = await eventually(_try, "order accepted")
    assert order["status"] == "PENDING"
    return order


async def order_status(
    client: httpx.AsyncClient, ep: Endpoints, headers: dict, order_id: str, *wanted: str
) -> dict:
    async def _check() -> dict | None:
        order = ok(await client.get(ep.order(f"/orders/{order_id}"), headers=headers))
        return order if order["status"] in wanted else None

    return await eventually(_check, f"order {order_id} in {wanted}")


async def payment_of(
    client: httpx.AsyncClient, ep: Endpoints, headers: dict, order_id: str, *wanted: str
) -> dict:
    async def _check() -> dict | None:
        page = ok(await client.get(ep.payment(f"/payments?order_id={order_id}"), headers=headers))
        items = [p for p in page["items"] if p["order_id"] == order_id]
        return items[0] if items and (not wanted or items[0]["status"] in wanted) else None

    return await eventually(_check, f"payment of {order_id} in {wanted or 'any'}")


async def stock(client: httpx.AsyncClient, ep: Endpoints, product_id: str) -> dict:
    return ok(await client.get(ep.inventory(f"/stock/{product_id}")))


async def pay(client: httpx.AsyncClient, ep: Endpoints, headers: dict, order_id: str) -> dict:
    await order_status(client, ep, headers, order_id, "AWAITING_PAYMENT")
    payment = await payment_of(client, ep, headers, order_id, "REQUIRES_PAYMENT")
    assert payment["provider"] == "fake"
    ok(
        await client.post(
            ep.payment(f"/payments/{payment['id']}/simulate"), json={"outcome": "succeeded"}, headers=headers
        ),
        202,
    )
    return payment


async def catalog(client: httpx.AsyncClient, ep: Endpoints) -> list[dict]:
    page = ok(await client.get(ep.product("/products?limit=100&sort=name")))
    assert page["total"] >= 20, page
    return page["items"]


async def stocked_products(
    client: httpx.AsyncClient, ep: Endpoints, count: int, minimum: int = 5
) -> list[dict]:
    """Demo products with stock, a different random few per call (tests share one catalog)."""
    import random

    products = await catalog(client, ep)
    random.shuffle(products)
    found = []
    for p in products:
        s = await stock(client, ep, p["id"])
        if s["available"] >= minimum:
            found.append(p)
        if len(found) == count:
            return found
    raise AssertionError("not enough demo products in stock")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


# --- journeys ------------------------------------------------------------------------------------


async def test_demo_catalog_and_docs(mart: Any, client: httpx.AsyncClient) -> None:
    products = await catalog(client, mart.ep)
    assert all(p["price_cents"] > 0 and p["currency"] for p in products)
    cats = ok(await client.get(mart.ep.product("/categories")))
    assert len(cats["items"] if isinstance(cats, dict) else cats) >= 3
    for svc in ("user", "product", "inventory", "order", "payment", "notification"):
        ok(await client.get(mart.ep.url(svc, "/health")))
        ok(await client.get(mart.ep.url(svc, "/ready")))
        docs = await client.get(mart.ep.url(svc, "/docs"))
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = ok(await client.get(mart.ep.url(svc, "/openapi.json")))
        assert spec["paths"]
    # one port with the Kong prefixes: the embedded mart itself, or the built-in gateway in front of the
    # distributed services (what Kong does in compose)
    gw = Endpoints.gateway(mart.gateway_url)
    assert ok(await client.get(gw.product("/products")))["total"] >= 20
    for svc in ("user", "product", "order"):
        docs = await client.get(gw.url(svc, "/docs"))
        assert docs.status_code == 200 and f"/{svc}-service/openapi.json" in docs.text
        ok(await client.get(gw.url(svc, "/openapi.json")))
    # the gateway's root is the shop (docs/web.md); the built-in gateway lists its upstreams at /_gateway
    shop = await client.get(mart.gateway_url + "/")
    assert shop.status_code == 200 and shop.headers["content-type"].startswith("text/html")
    assert "<title>Welcome · Online Mart</title>" in shop.text
    if mart.kind != "embedded":
        index = ok(await client.get(mart.gateway_url + "/_gateway"))
        assert index["services"]["user-service"]["docs"].endswith("/user-service/docs")
    if mart.kind == "embedded":
        creds = mart.data_dir / "demo-credentials.json"
        assert creds.stat().st_mode & 0o777 == 0o600
    # the demo accounts printed at start work
    await login(client, mart.ep, mart.creds.admin.email, mart.creds.admin.password)
    await login(client, mart.ep, mart.creds.customer.email, mart.creds.customer.password)


async def test_customer_journey(mart: Any, client: httpx.AsyncClient) -> None:
    ep = mart.ep
    me_headers, me = await new_customer(client, ep)
    assert ok(await client.get(ep.user("/users/me"), headers=me_headers))["email"] == me["email"]

    # browse
    first, second = await stocked_products(client, ep, 2)
    detail = ok(await client.get(ep.product(f"/products/{first['id']}")))
    assert detail["name"] == first["name"]
    found = ok(await client.get(ep.product("/products"), params={"q": first["name"].split()[0]}))
    assert any(p["id"] == first["id"] for p in found["items"])
    before = await stock(client, ep, first["id"])

    # order and pay through the fake provider
    key = uuid.uuid4().hex
    order = await place_order(client, ep, me_headers, [{"product_id": first["id"], "quantity": 2}], key=key)
    assert order["total_cents"] == 2 * first["price_cents"]
    assert order["items"][0]["unit_price_cents"] == first["price_cents"]
    again = ok(
        await client.post(
            ep.order("/orders"),
            json={"items": [{"product_id": first["id"], "quantity": 2}], "shipping_address": ADDRESS},
            headers={**me_headers, "Idempotency-Key": key},
        ),
        200,
        201,
    )
    assert again["id"] == order["id"]
    await pay(client, ep, me_headers, order["id"])
    paid = await order_status(client, ep, me_headers, order["id"], "PAID")
    assert [h["status"] for h in paid["history"]][:3] == ["PENDING", "AWAITING_PAYMENT", "PAID"]
    await payment_of(client, ep, me_headers, order["id"], "SUCCEEDED")

    async def committed() -> bool:
        s = await stock(client, ep, first["id"])
        return s["on_hand"] == before["on_hand"] - 2 and s["reserved"] == before["reserved"]

    await eventually(committed, "stock committed (on_hand down by 2, nothing left reserved)")

    # the receipt
    async def receipt() -> dict | None:
        page = ok(await client.get(ep.notification("/notifications"), headers=me_headers))
        return next(
            (n for n in page["items"] if n["kind"] == "payment_receipt" and n["order_id"] == order["id"]),
            None,
        )

    note = await eventually(receipt, "receipt notification")
    assert note["subject"]
    if mart.kind == "embedded" or (mart.data_dir / "mail").exists():

        async def eml() -> list:
            return [
                p
                for p in (mart.data_dir / "mail").glob("*payment_receipt*.eml")
                if order["id"] in p.read_text(errors="replace")
                or me["email"] in p.read_text(errors="replace")
            ]

        await eventually(eml, "receipt .eml written under <data dir>/mail")

    # another order: paid, then cancelled → refunded, stock back
    before2 = await stock(client, ep, second["id"])
    order2 = await place_order(client, ep, me_headers, [{"product_id": second["id"], "quantity": 1}])
    await pay(client, ep, me_headers, order2["id"])
    await order_status(client, ep, me_headers, order2["id"], "PAID")
    cancelled = ok(await client.post(ep.order(f"/orders/{order2['id']}/cancel"), headers=me_headers))
    assert cancelled["status"] == "CANCELLED"
    await payment_of(client, ep, me_headers, order2["id"], "REFUNDED")

    async def restocked() -> bool:
        s = await stock(client, ep, second["id"])
        return s["on_hand"] == before2["on_hand"] and s["reserved"] == before2["reserved"]

    await eventually(restocked, "stock of the cancelled order back")

    async def refund_note() -> bool:
        page = ok(await client.get(ep.notification("/notifications"), headers=me_headers))
        return any(n["kind"] == "payment_refunded" and n["order_id"] == order2["id"] for n in page["items"])

    await eventually(refund_note, "refund notification")

    # someone else's order is not found
    other_headers, _ = await new_customer(client, ep)
    assert (await client.get(ep.order(f"/orders/{order['id']}"), headers=other_headers)).status_code == 404


async def test_admin_journey(mart: Any, client: httpx.AsyncClient, cli: Callable[..., Any]) -> None:
    ep = mart.ep
    admin = await login(client, ep, mart.creds.admin.email, mart.creds.admin.password)
    customer = await login(client, ep, mart.creds.customer.email, mart.creds.customer.password)

    # create a product
    sku = f"E2E-{uuid.uuid4().hex[:8].upper()}"
    cats = ok(await client.get(ep.product("/categories")))
    cat = (cats["items"] if isinstance(cats, dict) else cats)[0]
    product = ok(
        await client.post(
            ep.product("/products"),
            json={
                "sku": sku,
                "name": f"Field Notebook {sku}",
                "description": "Dot grid, 96 pages.",
                "price_cents": 1275,
                "currency": "USD",
                "category_id": cat["id"],
            },
            headers=admin,
        ),
        201,
    )
    pid = product["id"]
    assert (
        await client.post(
            ep.product("/products"),
            json={"sku": sku, "name": "dup", "description": "", "price_cents": 1, "currency": "USD"},
            headers=admin,
        )
    ).status_code == 409
    assert (
        await client.post(
            ep.product("/products"),
            json={"sku": sku + "X", "name": "x", "description": "", "price_cents": 1, "currency": "USD"},
            headers=customer,
        )
    ).status_code == 403

    # adjust its stock (inventory learns the product from ProductCreated)
    async def known() -> bool:
        return (await client.get(ep.inventory(f"/stock/{pid}"))).status_code == 200

    await eventually(known, "inventory knows the new product")
    adj = ok(
        await client.post(
            ep.inventory(f"/stock/{pid}/adjustments"), json={"delta": 10, "reason": "delivery"}, headers=admin
        ),
        201,
    )
    assert adj["stock"]["on_hand"] == 10
    assert (
        await client.post(
            ep.inventory(f"/stock/{pid}/adjustments"), json={"delta": -11, "reason": "oops"}, headers=admin
        )
    ).status_code == 409
    trail = ok(await client.get(ep.inventory(f"/stock/{pid}/adjustments"), headers=admin))
    assert trail["total"] == 1

    # the customer buys 3, pays; the admin ships and delivers
    order = await place_order(client, ep, customer, [{"product_id": pid, "quantity": 3}])
    assert order["total_cents"] == 3 * 1275
    await pay(client, ep, customer, order["id"])
    await order_status(client, ep, admin, order["id"], "PAID")
    assert (await client.post(ep.order(f"/orders/{order['id']}/ship"), headers=customer)).status_code == 403
    assert (await client.post(ep.order(f"/orders/{order['id']}/deliver"), headers=admin)).status_code == 409
    assert (
        ok(await client.post(ep.order(f"/orders/{order['id']}/ship"), headers=admin))["status"] == "SHIPPED"
    )
    done = ok(await client.post(ep.order(f"/orders/{order['id']}/deliver"), headers=admin))
    assert done["status"] == "DELIVERED"
    assert [h["status"] for h in done["history"]] == [
        "PENDING",
        "AWAITING_PAYMENT",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]

    async def committed() -> bool:
        s = await stock(client, ep, pid)
        return s == {**s, "on_hand": 7, "reserved": 0, "available": 7}

    await eventually(committed, "stock 7 on hand after the sale")
    listed = ok(await client.get(ep.order("/orders"), params={"status": "DELIVERED"}, headers=admin))
    assert any(o["id"] == order["id"] for o in listed["items"])

    async def delivered_note() -> bool:
        page = ok(await client.get(ep.notification("/notifications"), headers=customer))
        return any(n["kind"] == "order_delivered" and n["order_id"] == order["id"] for n in page["items"])

    await eventually(delivered_note, "delivery notification")

    # the operator CLI: the saga timeline and the dead letters (none expected)
    timeline = await asyncio.to_thread(cli, "order", "timeline", order["id"], *mart.cli_args)
    assert timeline.returncode == 0, timeline.stderr + timeline.stdout
    for status in ("PENDING", "AWAITING_PAYMENT", "PAID", "SHIPPED", "DELIVERED", "SUCCEEDED"):
        assert status in timeline.stdout, timeline.stdout
    data_dir_args = ["--data-dir", str(mart.data_dir)]
    dlq = await asyncio.to_thread(cli, "dlq", "list", "order-service", *data_dir_args)
    assert dlq.returncode == 0, dlq.stderr + dlq.stdout
    assert "0 dead letter(s)" in dlq.stdout, dlq.stdout


# --- crash ---------------------------------------------------------------------------------------


async def test_embedded_crash_mid_checkout_loses_nothing(
    embedded_process: Any, client: httpx.AsyncClient
) -> None:
    """kill -9 right after placing the order and again right after paying; each restart resumes the saga
    from the outboxes and the bus log: the order ends PAID with its stock committed, charged once."""
    process = embedded_process
    data_dir = process.data_dir
    await asyncio.to_thread(process.start)
    try:
        ep = Endpoints.gateway(process.url)
        creds = load_or_create(data_dir)
        customer = await login(client, ep, creds.customer.email, creds.customer.password)
        (product,) = await stocked_products(client, ep, 1)
        before = await stock(client, ep, product["id"])

        order = await place_order(client, ep, customer, [{"product_id": product["id"], "quantity": 2}])
        process.kill()  # crash 1: the order is PENDING, OrderPlaced is in the outbox or on the bus
        await asyncio.to_thread(process.start)
        customer = await login(client, ep, creds.customer.email, creds.customer.password)
        payment = await pay(client, ep, customer, order["id"])
        process.kill()  # crash 2: the payment event was just fed through the webhook path
        await asyncio.to_thread(process.start)

        customer = await login(client, ep, creds.customer.email, creds.customer.password)
        paid = await order_status(client, ep, customer, order["id"], "PAID", "CANCELLED", "REJECTED")
        assert paid["status"] == "PAID", paid
        done = await payment_of(client, ep, customer, order["id"], "SUCCEEDED")
        assert done["id"] == payment["id"]
        page = ok(await client.get(ep.payment(f"/payments?order_id={order['id']}"), headers=customer))
        assert page["total"] == 1

        async def committed() -> bool:
            s = await stock(client, ep, product["id"])
            return s["on_hand"] == before["on_hand"] - 2 and s["reserved"] == before["reserved"]

        await eventually(committed, "stock committed after the restarts")
        # restarts keep data and do not seed twice
        assert len(await catalog(client, ep)) == len({p["sku"] for p in await catalog(client, ep)})
        assert (await asyncio.to_thread(process.stop)) == 0
        print(f"\n[e2e] embedded starts: {', '.join(f'{s:.1f}s' for s in process.starts)}")  # noqa: T201
    finally:
        process.kill()


# --- dead letters --------------------------------------------------------------------------------


async def test_dead_letters_list_and_redrive(mart: Any, cli: Callable[..., Any]) -> None:
    """A poison record (no CloudEvents headers) on mart.orders.v1 lands in inventory-service's dead-letter
    topic; `mart dlq list` shows it and `mart dlq redrive` puts it back (where it is dead-lettered again)."""
    from mart_common.messaging import BusMessage

    from mart_cli.dist import DistConfig
    from mart_cli.ops import build_bus

    dist_cfg = DistConfig.load(mart.data_dir)
    bus = build_bus("inprocess" if mart.kind == "embedded" else "kafka", mart.data_dir, dist_cfg)
    key = f"poison-{uuid.uuid4().hex[:8]}"
    await bus.start()
    try:
        await bus.publish(BusMessage(topic="mart.orders.v1", key=key, value=b"\x00not protobuf"))

        async def dead() -> list:
            return [m for m in await bus.dead_letters("inventory-service") if m.key == key]

        await eventually(dead, "poison record dead-lettered")
    finally:
        await bus.stop()
    args = ["--data-dir", str(mart.data_dir)]
    listed = await asyncio.to_thread(cli, "dlq", "list", "inventory-service", *args)
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert key in listed.stdout and "permanent" in listed.stdout, listed.stdout
    redriven = await asyncio.to_thread(cli, "dlq", "redrive", "inventory", *args)
    assert redriven.returncode == 0, redriven.stderr + redriven.stdout
    assert "re-drove" in redriven.stdout and "re-drove 0 " not in redriven.stdout, redriven.stdout

    bus = build_bus("inprocess" if mart.kind == "embedded" else "kafka", mart.data_dir, dist_cfg)
    await bus.start()
    try:

        async def dead_twice() -> bool:
            return len([m for m in await bus.dead_letters("inventory-service") if m.key == key]) == 2

        await eventually(dead_twice, "re-driven poison record dead-lettered again")
    finally:
        await bus.stop()
    # the mart is still healthy afterwards
    async with httpx.AsyncClient(timeout=30) as client:
        ok(await client.get(mart.ep.inventory("/ready")))
