"""What only the containers can get wrong (docs/docker.md, "Without a registry"): the non-root user and its
writable data volume, migrations at start, the health checks, service-to-service URLs by compose name,
uvicorn's --proxy-headers, and a container restarted mid-load losing nothing.

The journeys themselves run against the containers through the ``containers`` target of the ``mart``
fixture (test_journeys.py); these tests use the same stack.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import yaml

from .containers import APPS, REPO_ROOT, ContainerStack
from .test_journeys import (
    eventually,
    new_customer,
    ok,
    order_status,
    pay,
    place_order,
    stock,
    stocked_products,
)

# generous: the first test on the stack also waits for the image build (cold: a Debian rootfs + eight images)
pytestmark = [pytest.mark.e2e, pytest.mark.containers, pytest.mark.timeout(2400)]

APP_UID = "10001"


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


def test_services_run_as_non_root_with_a_writable_data_volume(container_stack: ContainerStack) -> None:
    stack = container_stack
    for svc in APPS:
        info = stack.inspect(svc)
        assert info["Config"]["User"].split(":")[0] == APP_UID, (svc, info["Config"]["User"])
        assert stack.exec(svc, "id", "-u").stdout.strip() == APP_UID, svc
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/app/data"]["Type"] == "volume", (svc, mounts)
        # the named volume is writable by the service's user (the image's /app/data ownership carried over)
        probe = f"/app/data/.probe-{uuid.uuid4().hex[:6]}"
        stack.exec(svc, "sh", "-c", f"echo ok > {probe} && rm {probe}")
        assert stack.exec(svc, "sh", "-c", "touch /opt/venv/probe", check=False).returncode != 0, (
            f"{svc}: the application code must not be writable by the service's user"
        )
    # user_service keeps its JWT signing key on that volume (user_service/keys.py), private to the user
    owner_mode = stack.exec(
        "user_service", "stat", "-c", "%u %a", "/app/data/keys/user-service-jwt.pem"
    ).stdout
    assert owner_mode.split() == [APP_UID, "600"], owner_mode


def test_migrations_ran_at_start(container_stack: ContainerStack) -> None:
    for svc in APPS:
        db = svc.removesuffix("_service") + "_db"
        out = container_stack.exec(
            db, "psql", "-U", svc, "-d", svc, "-Atc",
            "SELECT (SELECT count(*) FROM alembic_version), "
            "(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')",
        ).stdout.strip()  # fmt: skip
        versions, tables = (int(x) for x in out.split("|"))
        assert versions == 1 and tables >= 3, f"{svc}: alembic_version rows={versions}, tables={tables}"


def test_health_checks_report_healthy(container_stack: ContainerStack) -> None:
    stack = container_stack
    for svc in [*APPS, "user_db", "kafka"]:
        info = stack.inspect(svc)
        test = json.dumps(info["Config"]["Healthcheck"]["Test"])
        if svc in APPS:
            assert "/health" in test, (svc, test)
        assert stack.healthcheck(svc) == "healthy", (svc, stack.logs(svc))


def test_services_reach_user_service_by_compose_name(container_stack: ContainerStack) -> None:
    stack = container_stack
    for svc in APPS[1:]:
        env = dict(e.split("=", 1) for e in stack.inspect(svc)["Config"]["Env"])
        assert env["MART_JWKS_URL"] == "http://user_service:8006/.well-known/jwks.json"
        out = stack.exec(
            svc, "python", "-c",
            "import json, urllib.request; print(json.load(urllib.request.urlopen("
            "'http://user_service:8006/.well-known/jwks.json', timeout=5)))",
        ).stdout  # fmt: skip
        assert "'kty': 'RSA'" in out, (svc, out)


async def test_tokens_issued_by_user_service_are_accepted_by_the_others(
    containers_mart: Any, client: httpx.AsyncClient
) -> None:
    ep = containers_mart.ep
    headers, me = await new_customer(client, ep)
    # each of these verifies the token against the JWKS it fetched from user_service inside the network
    ok(await client.get(ep.order("/orders"), headers=headers))
    ok(await client.get(ep.payment("/payments"), headers=headers))
    ok(await client.get(ep.notification("/notifications"), headers=headers))
    assert (
        await client.get(ep.order("/orders"), headers={"Authorization": "Bearer x.y.z"})
    ).status_code == 401


async def test_proxy_headers_are_honoured(containers_mart: Any, client: httpx.AsyncClient) -> None:
    """uvicorn --proxy-headers: behind a TLS-terminating gateway, redirects keep the public scheme."""
    url = containers_mart.ep.product("/products/")
    plain = await client.get(url, follow_redirects=False)
    assert plain.status_code in (307, 308), plain.text
    assert plain.headers["location"].startswith("http://"), plain.headers
    proxied = await client.get(
        url, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}, follow_redirects=False
    )
    assert proxied.status_code in (307, 308), proxied.text
    assert proxied.headers["location"].startswith("https://"), proxied.headers


async def test_user_service_restart_keeps_signing_key_and_sessions(
    containers_mart: Any, container_stack: ContainerStack, client: httpx.AsyncClient
) -> None:
    ep = containers_mart.ep
    headers, _ = await new_customer(client, ep)
    kids = {k["kid"] for k in ok(await client.get(ep.user("/.well-known/jwks.json")))["keys"]}
    await asyncio.to_thread(container_stack.restart, "user_service")
    after = {k["kid"] for k in ok(await client.get(ep.user("/.well-known/jwks.json")))["keys"]}
    assert kids <= after, (kids, after)
    ok(await client.get(ep.user("/users/me"), headers=headers))


async def test_order_service_restart_mid_load_loses_nothing(
    containers_mart: Any, container_stack: ContainerStack, client: httpx.AsyncClient
) -> None:
    """Orders placed and paid while order_service's container restarts: every saga completes exactly once
    (the fault suite's invariants, through the API): each order PAID with one succeeded payment, no
    duplicate order from the client's retries, stock committed exactly, nothing left reserved."""
    ep = containers_mart.ep
    headers, _ = await new_customer(client, ep)
    products = await stocked_products(client, ep, 3, minimum=10)
    before = {p["id"]: await stock(client, ep, p["id"]) for p in products}
    n_orders = 6
    first_placed = asyncio.Event()
    orders: list[dict] = []

    async def shopper() -> None:
        for i in range(n_orders):
            product = products[i % len(products)]
            order = await place_order(client, ep, headers, [{"product_id": product["id"], "quantity": 1}])
            orders.append(order)
            first_placed.set()
            await pay(client, ep, headers, order["id"])

    async def restarter() -> None:
        await first_placed.wait()
        await asyncio.to_thread(container_stack.restart, "order_service")

    await asyncio.gather(shopper(), restarter())

    for order in orders:
        await order_status(client, ep, headers, order["id"], "PAID")

    async def one_payment_each() -> bool:
        for order in orders:
            page = ok(await client.get(ep.payment(f"/payments?order_id={order['id']}"), headers=headers))
            mine = [p for p in page["items"] if p["order_id"] == order["id"]]
            assert [p["status"] for p in mine] == ["SUCCEEDED"], (order["id"], mine)
        return True

    await eventually(one_payment_each, "exactly one succeeded payment per order")
    listed = ok(await client.get(ep.order("/orders"), headers=headers))
    assert listed["total"] == n_orders, listed
    bought = Counter(products[i % len(products)]["id"] for i in range(n_orders))

    async def committed() -> bool:
        for pid, qty in bought.items():
            s = await stock(client, ep, pid)
            assert s["on_hand"] == before[pid]["on_hand"] - qty, (pid, s, before[pid])
            assert s["reserved"] == before[pid]["reserved"], (pid, s, before[pid])
        return True

    await eventually(committed, "stock committed exactly once per order, nothing reserved")


def test_kong_upstreams_answer_inside_the_compose_network(container_stack: ContainerStack) -> None:
    """kong/kong.yaml's service URLs (http://<compose name>:<port>) reach the running images, and each image
    serves under the root path that Kong's route prefix expects (the web front at "/"; Kong itself cannot be
    had here)."""
    kong = yaml.safe_load((REPO_ROOT / "kong" / "kong.yaml").read_text())
    for svc in kong["services"]:
        url = svc["url"]
        out = container_stack.exec(
            "user_service", "python", "-c",
            f"import urllib.request; print(urllib.request.urlopen('{url}/health', timeout=5).status)",
        ).stdout.strip()  # fmt: skip
        assert out == "200", (url, out)
        package = url.split("//")[1].split(":")[0]
        env = dict(e.split("=", 1) for e in container_stack.inspect(package)["Config"]["Env"])
        prefixes = {p for r in svc["routes"] for p in r.get("paths", []) if not p.startswith("~")}
        root = env.get("MART_ROOT_PATH") or "/"  # the web front has none: it is served at the root
        assert root in prefixes, (package, root, prefixes)


async def test_register_services_loads_the_running_user_service_key(
    containers_mart: Any, client: httpx.AsyncClient
) -> None:
    """register_services.sh takes the key from the user_service container's JWKS (the host port, as users run
    it) and puts exactly that key in the configuration it applies (a stand-in Admin API: no Kong here)."""
    from cryptography.hazmat.primitives import serialization

    from ..deploy.test_register_services import FakeKong, run_script

    jwks_url = containers_mart.ep.user("/.well-known/jwks.json")
    jwk = ok(await client.get(jwks_url))["keys"][0]
    with FakeKong() as kong:
        proc = await asyncio.to_thread(run_script, {"KONG_ADMIN_URL": kong.url, "MART_JWKS_URL": jwks_url})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = yaml.safe_load(kong.config_text)
    pem = applied["consumers"][0]["jwt_secrets"][0]["rsa_public_key"]
    numbers = serialization.load_pem_public_key(pem.encode()).public_numbers()
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)), "big")
    assert numbers.n == n and numbers.e == 65537
