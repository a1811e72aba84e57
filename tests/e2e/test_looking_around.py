"""Looking at a running mart (docs/looking-around.md): a paid, then cancelled order's events through
``mart events tail`` / ``mart events topics`` and its mails (one receipt, then the refund) in every mode:
``.eml`` files (embedded), Mailpit (distributed), the compose stack's SMTP server (containers)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from mart_testkit.fixtures import eventually as poll_until

from mart_cli.client import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ADDRESS = {"name": "Ada King", "line1": "1 Main St", "city": "Dublin", "postal_code": "D01", "country": "IE"}


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    return await poll_until(
        check, timeout=timeout, interval=0.3, message=what, retry_on=(AssertionError, httpx.TransportError)
    )


def ok(response: httpx.Response, *codes: int) -> Any:
    assert response.status_code in (codes or (200,)), (
        f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:800]}"
    )
    return response.json() if response.content else None


async def paid_then_cancelled_order(client: httpx.AsyncClient, mart: Any) -> tuple[str, str]:
    """A new customer orders a product in stock, pays (fake provider), cancels: refunded. Returns the
    order id and the customer's email."""
    ep = mart.ep
    email = f"looker-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    body = {"email": email, "password": password, "full_name": "Grace Hopper"}
    ok(await client.post(ep.user("/auth/register"), json=body), 201)
    token = ok(await client.post(ep.user("/auth/login"), data={"username": email, "password": password}))
    headers = bearer(token["access_token"])

    products = ok(await client.get(ep.product("/products?limit=100")))["items"]
    for product in products:
        if ok(await client.get(ep.inventory(f"/stock/{product['id']}")))["available"] >= 3:
            break
    else:
        raise AssertionError("no demo product in stock")
    order_body = {"items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS}
    order = ok(await client.post(ep.order("/orders"), json=order_body, headers=headers), 201)
    order_id = order["id"]

    async def payment() -> dict | None:
        page = ok(await client.get(ep.payment(f"/payments?order_id={order_id}"), headers=headers))
        return next((p for p in page["items"] if p["status"] == "REQUIRES_PAYMENT"), None)

    pay = await eventually(payment, "payment intent created")
    simulate = ep.payment(f"/payments/{pay['id']}/simulate")
    ok(await client.post(simulate, json={"outcome": "succeeded"}, headers=headers), 202)

    async def status(wanted: str) -> bool:
        return ok(await client.get(ep.order(f"/orders/{order_id}"), headers=headers))["status"] == wanted

    await eventually(lambda: status("PAID"), "order PAID")
    ok(await client.post(ep.order(f"/orders/{order_id}/cancel"), headers=headers))
    return order_id, email


async def run_cli(cli: Callable[..., Any], *args: str) -> Any:
    result = await asyncio.to_thread(cli, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def test_events_and_mail_of_a_paid_order(mart: Any, cli: Callable[..., Any]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        order_id, email = await paid_then_cancelled_order(client, mart)
        where = ["--data-dir", str(mart.data_dir)]
        wanted = {
            "mart.orders.v1.OrderPlaced",
            "mart.stock.v1.StockReserved",
            "mart.orders.v1.OrderAwaitingPayment",
            "mart.payments.v1.PaymentSucceeded",
            "mart.orders.v1.OrderPaid",
            "mart.orders.v1.OrderCancelled",
            "mart.payments.v1.PaymentRefunded",
        }

        async def saga_events() -> list[dict] | None:
            args = ["--order", order_id, "--from-beginning", "--no-follow", "--json", *where]
            result = await run_cli(cli, "events", "tail", *args)
            events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
            return events if wanted <= {e["type"] for e in events} else None

        events = await eventually(saga_events, "the order's saga in `mart events tail --order`")
        assert all(e["payload"]["order_id"] == order_id for e in events), events
        placed = next(e for e in events if e["type"] == "mart.orders.v1.OrderPlaced")
        assert placed["topic"] == "mart.orders.v1" and placed["key"] == order_id
        assert placed["headers"]["ce_specversion"] == "1.0"
        assert placed["headers"]["ce_source"] == "order-service"
        assert placed["headers"]["content-type"] == "application/protobuf"

        only_paid = await run_cli(
            cli, "events", "tail", "--order", order_id, "--type", "OrderPaid", "--from-beginning",
            "--no-follow", *where,
        )  # fmt: skip
        assert "mart.orders.v1.OrderPaid" in only_paid.stdout
        assert "OrderPlaced" not in only_paid.stdout
        assert f'"order_id": "{order_id}"' in only_paid.stdout
        assert "1 event(s)" in only_paid.stderr

        topics = json.loads((await run_cli(cli, "events", "topics", "--json", *where)).stdout)
        orders = next(t for t in topics if t["topic"] == "mart.orders.v1")
        assert orders["messages"] >= 3
        groups = {g["group"] for g in orders["groups"]}
        assert {"inventory-service", "payment-service", "notification-service"} <= groups, groups

        # The mails, wherever this mode delivers them (.eml files, Mailpit, the containers' SMTP server).
        assert mart.mailbox is not None

        async def mails() -> list | None:
            found = await mart.mailbox(email)
            # the refund mail comes after the receipt (same payment key, same partition, in order)
            return found if any(m.subject.startswith("Refund of") for m in found) else None

        messages = await eventually(mails, f"the refund mail ({mart.kind})")
        receipts = [m for m in messages if m.subject.startswith("Payment receipt for order")]
        assert len(receipts) == 1, [m.subject for m in messages]
        assert email in receipts[0].to
        assert order_id.split("-")[0].upper() in receipts[0].subject  # the order's short reference
        assert receipts[0].text.strip() and receipts[0].html.strip()
