"""Traces across services and Kafka, read back from Zipkin (docs/tracing.md).

The local distributed mode as ``mart dist up --trace`` runs it (the code behind it: ``mart_cli.dist`` with
``trace=True``): Zipkin started by ``scripts/infra/zipkin.sh``, six uvicorn processes exporting to it,
fresh databases, a fresh Kafka namespace and free ports. One checkout — place the order, pay it with the
fake provider (the client continues its trace, as a front end does: ``traceparent`` from the order's
``traceresponse``), PAID, the receipt — must be ONE trace in Zipkin whose spans come from order-,
inventory-, payment- and notification-service, every consumer span a child of the producer span of
another service (the ``traceparent`` Kafka header); and the trace id must be in the log of each of them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mart_testkit.fixtures import eventually as poll_until
from mart_testkit.stack import distributed_stack

from mart_cli import dist
from mart_cli.credentials import Credentials, load_or_create
from mart_cli.seed import seed
from mart_cli.services import SERVICES, Endpoints

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.distributed,
    pytest.mark.postgres,
    pytest.mark.kafka,
    pytest.mark.timeout(400),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ZIPKIN = REPO_ROOT / "scripts" / "infra" / "zipkin.sh"
ZIPKIN_PORT = 9411
ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
           "postal_code": "SW1Y 4JH", "country": "GB"}  # fmt: skip
TOUCHED = ("order-service", "inventory-service", "payment-service", "notification-service")
START_TIMEOUT = 180.0  # generous: CI machines may be busy


def _zipkin(command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MART_DATA_DIR": str(dist.default_data_dir()), "MART_ZIPKIN_PORT": str(ZIPKIN_PORT)}
    return subprocess.run(  # noqa: S603
        [str(ZIPKIN), command], env=env, capture_output=True, text=True, timeout=300, check=False
    )


class Traced:
    def __init__(self, cfg: dist.DistConfig, creds: Credentials) -> None:
        self.cfg = cfg
        self.ep: Endpoints = cfg.direct_endpoints()
        self.creds = creds
        self.zipkin = cfg.zipkin_url


@pytest.fixture(scope="module")
def traced_mart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    zipkin_was_up = _zipkin("status").returncode == 0
    # Zipkin's JVM starts while the services do (the script installs the jar when missing, then waits)
    zipkin_result: list[subprocess.CompletedProcess[str]] = []
    starter = threading.Thread(target=lambda: zipkin_result.append(_zipkin("start")), daemon=True)
    starter.start()
    try:
        with distributed_stack(
            tmp_path_factory.mktemp("traced") / "data",
            namespace="trace",
            infra=True,
            trace=True,
            zipkin_port=ZIPKIN_PORT,
            extra_env={"OTEL_BSP_SCHEDULE_DELAY": "200"},  # spans reach Zipkin within 0.2 s
            ready_timeout=START_TIMEOUT,
        ) as stack:
            creds = load_or_create(stack.cfg.data_dir)

            async def _seed() -> None:
                async with httpx.AsyncClient(timeout=60) as client:
                    await seed(client, stack.direct, creds)

            asyncio.run(_seed())
            starter.join(timeout=300)
            assert zipkin_result and zipkin_result[0].returncode == 0, (
                f"zipkin.sh start failed:\n{zipkin_result[0].stdout}{zipkin_result[0].stderr}"
                if zipkin_result
                else "zipkin.sh start did not finish"
            )
            yield Traced(stack.cfg, creds)
    finally:
        starter.join(timeout=300)
        if not zipkin_was_up:
            _zipkin("stop")


async def eventually(check: Any, what: str, timeout: float = 60.0) -> Any:
    return await poll_until(
        check, timeout=timeout, interval=0.3, message=what, retry_on=(AssertionError, httpx.TransportError)
    )


def ok(response: httpx.Response, *codes: int) -> Any:
    assert response.status_code in (codes or (200,)), (
        f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
    )
    return response.json()


async def test_one_checkout_is_one_trace_across_services_and_kafka(traced_mart: Traced) -> None:
    ep, mart = traced_mart.ep, traced_mart
    async with httpx.AsyncClient(timeout=30) as client:
        login = ok(
            await client.post(
                ep.user("/auth/login"),
                data={"username": mart.creds.customer.email, "password": mart.creds.customer.password},
            )
        )
        auth = {"Authorization": f"Bearer {login['access_token']}"}
        products = ok(await client.get(ep.product("/products?limit=100")))["items"]
        stocked = [
            p for p in products if ok(await client.get(ep.inventory(f"/stock/{p['id']}")))["available"] >= 1
        ]
        assert stocked, "the seeded catalog has no product in stock"

        # place the order: a request without traceparent starts the trace; the response names it
        async def _place() -> httpx.Response | None:
            r = await client.post(
                ep.order("/orders"),
                json={
                    "items": [{"product_id": stocked[0]["id"], "quantity": 1}],
                    "shipping_address": ADDRESS,
                },
                headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            )
            return None if r.status_code == 422 else r  # the order service may not know the product yet

        placed = await eventually(_place, "order accepted")
        order = ok(placed, 201)
        version, trace_id, span_id, _flags = placed.headers["traceresponse"].split("-")
        assert version == "00" and len(trace_id) == 32

        async def _payment() -> dict | None:
            page = ok(await client.get(ep.payment(f"/payments?order_id={order['id']}"), headers=auth))
            found = [p for p in page["items"] if p["status"] == "REQUIRES_PAYMENT"]
            return found[0] if found else None

        payment = await eventually(_payment, "payment requested")
        # pay: the client continues its checkout trace
        ok(
            await client.post(
                ep.payment(f"/payments/{payment['id']}/simulate"),
                json={"outcome": "succeeded"},
                headers={**auth, "traceparent": f"00-{trace_id}-{span_id}-01"},
            ),
            202,
        )

        async def _paid() -> bool:
            return ok(await client.get(ep.order(f"/orders/{order['id']}"), headers=auth))["status"] == "PAID"

        await eventually(_paid, "order PAID")

        async def _receipt() -> bool:
            page = ok(await client.get(ep.notification("/notifications"), headers=auth))
            return any(n["kind"] == "payment_receipt" and n["order_id"] == order["id"] for n in page["items"])

        await eventually(_receipt, "receipt notification")

        # ONE trace in Zipkin, read back through its HTTP API
        def _complete(spans: list[dict]) -> bool:
            consumers = {
                (s["localEndpoint"]["serviceName"], s["name"]) for s in spans if s.get("kind") == "CONSUMER"
            }
            return {
                ("inventory-service", "handle orderplaced"),
                ("order-service", "handle stockreserved"),
                ("payment-service", "handle orderawaitingpayment"),
                ("order-service", "handle paymentsucceeded"),
                ("notification-service", "handle orderpaid"),
            } <= consumers

        async def _trace() -> list[dict] | None:
            r = await client.get(f"{mart.zipkin}/api/v2/trace/{trace_id}")
            if r.status_code == 404:
                return None
            spans = ok(r)
            return spans if _complete(spans) else None

        spans = await eventually(_trace, f"trace {trace_id} complete in Zipkin")

    assert {s["traceId"] for s in spans} == {trace_id}
    by_id = {s["id"]: s for s in spans}
    services = {s["localEndpoint"]["serviceName"] for s in spans}
    assert set(TOUCHED) <= services, services
    (root,) = [s for s in spans if s.get("kind") == "SERVER" and s["name"] == "post /orders"]
    assert root["localEndpoint"]["serviceName"] == "order-service"
    assert root.get("parentId") is None  # the client sent no traceparent: the order service started it
    # every hop over Kafka: a consumer span whose parent is a producer span of another service
    consumers = [s for s in spans if s.get("kind") == "CONSUMER"]
    assert len(consumers) >= 5
    for consumer in consumers:
        parent = by_id.get(consumer.get("parentId", ""))
        assert parent is not None, f"{consumer['name']}: its parent span is not in the trace"
        assert parent.get("kind") == "PRODUCER", (consumer["name"], parent["name"])
        assert parent["localEndpoint"]["serviceName"] != consumer["localEndpoint"]["serviceName"]
        assert parent["name"] == consumer["name"].replace("handle ", "send ")
    # the chain from the order placement to the receipt, link by link
    receipt = next(
        s
        for s in consumers
        if s["localEndpoint"]["serviceName"] == "notification-service" and s["name"] == "handle orderpaid"
    )
    chain, span = [], receipt
    while span is not None:
        chain.append((span["localEndpoint"]["serviceName"], span["name"]))
        span = by_id.get(span.get("parentId", ""))
    # receipt <- OrderPaid <- PaymentSucceeded <- the payment request <- the order placement (the root)
    assert chain[-1] == ("order-service", "post /orders"), chain
    assert ("payment-service", "post /payments/{payment_id}/simulate") in chain, chain
    assert ("order-service", "handle paymentsucceeded") in chain, chain

    # the trace id is in the log of every service the checkout touched
    async def _logged() -> bool:
        missing = []
        for svc in SERVICES:
            if svc.name in TOUCHED:
                log = (mart.cfg.log_dir / f"{svc.package}.log").read_text(errors="replace")
                if f'"trace_id": "{trace_id}"' not in log:
                    missing.append(svc.name)
        assert not missing, f"trace {trace_id} not in the logs of {missing}"
        return True

    await eventually(_logged, "the trace id in the four services' logs", timeout=30)
