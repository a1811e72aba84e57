# ruff: noqa: E402  (the sys.modules fix-up in test_fuzz_openapi must run before the service imports)
"""Fuzzing on the real stack: the local distributed mode (six uvicorn processes, one PostgreSQL database
each, the Kafka broker), reached over HTTP only.

1. schemathesis over every operation of the six OpenAPI documents served by the running services, as three
   callers (no token, a customer, the admin), positive and negative generation, with the checks of
   ``test_fuzz_openapi.CHECKS`` (no 5xx, documented status codes, documented response schemas, invalid
   input rejected) plus problem+json on every 4xx. The number of operations exercised is asserted: all.
2. Inputs PostgreSQL refuses where SQLite does not (NUL characters, lone surrogates, integers beyond
   64 bits) and odd Unicode, in EVERY text field of every request body and every text query parameter:
   each answer is a 4xx problem+json or a 2xx that gives the exact value back, never a 5xx. The set of
   covered fields is checked against the OpenAPI documents, so a new text field is covered or fails.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from mart_testkit.fixtures import KAFKA_BOOTSTRAP
from mart_testkit.stack import distributed_stack

from mart_cli import dist
from mart_cli.credentials import load_or_create
from mart_cli.services import SERVICES, Endpoints

from .test_fuzz_openapi import run_operation

pytestmark = [pytest.mark.distributed, pytest.mark.postgres, pytest.mark.kafka]

MAX_EXAMPLES = int(os.environ.get("MART_FUZZ_DIST_EXAMPLES", "25"))
KAFKA = KAFKA_BOOTSTRAP
CUSTOMER_PASSWORD = "fuzz-dist-password-1"  # noqa: S105 (test account)


@dataclass
class Stack:
    cfg: dist.DistConfig
    ep: Endpoints
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # caller -> Authorization header
    ids: dict[str, str] = field(default_factory=dict)
    refresh_token: str = ""

    def url(self, package: str, path: str) -> str:
        return f"http://127.0.0.1:{self.cfg.ports[package]}{path}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with distributed_stack(
        tmp_path_factory.mktemp("fuzz-dist") / "data",
        namespace="fz",
        kafka_bootstrap=KAFKA,
        extra_env={"MART_LOG_LEVEL": "WARNING"},
    ) as running:
        stack = Stack(cfg=running.cfg, ep=running.direct)
        asyncio.run(_prepare(stack))
        yield stack


async def _prepare(stack: Stack) -> None:
    """Real accounts and tokens, one product with stock, one order with its payment (ids for the bodies)."""
    ep, creds = stack.ep, load_or_create(stack.cfg.data_dir)
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            ep.user("/auth/login"), data={"username": creds.admin.email, "password": creds.admin.password}
        )
        assert r.status_code == 200, r.text
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await c.post(
            ep.user("/auth/register"),
            json={"email": email, "password": CUSTOMER_PASSWORD, "full_name": "Fuzz"},
        )
        assert r.status_code == 201, r.text
        stack.ids["customer"] = r.json()["id"]
        r = await c.post(ep.user("/auth/login"), data={"username": email, "password": CUSTOMER_PASSWORD})
        assert r.status_code == 200, r.text
        customer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        stack.refresh_token = r.json()["refresh_token"]
        stack.headers = {"none": {}, "customer": customer, "admin": admin}
        r = await c.post(
            ep.product("/products"),
            json={
                "sku": f"FZ-{uuid.uuid4().hex[:6]}",
                "name": "Fuzz mug",
                "price_cents": 900,
                "currency": "USD",
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        product = stack.ids["product"] = r.json()["id"]
        deadline = time.monotonic() + 60
        while (
            r := await c.post(
                ep.inventory(f"/stock/{product}/adjustments"),
                json={"delta": 1000, "reason": "fuzz"},
                headers=admin,
            )
        ).status_code != 201:
            assert time.monotonic() < deadline, r.text  # inventory learns the product from its event
            await asyncio.sleep(0.2)
        order_body = {
            "items": [{"product_id": product, "quantity": 1}],
            "shipping_address": {
                "line1": "1 Fuzz St",
                "city": "Fuzz",
                "postal_code": "1000",
                "country": "US",
            },
        }
        deadline = time.monotonic() + 60
        while (r := await c.post(ep.order("/orders"), json=order_body, headers=customer)).status_code != 201:
            assert time.monotonic() < deadline, r.text  # the order service learns the catalog from events
            await asyncio.sleep(0.2)
        stack.ids["order"] = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            r = await c.get(
                ep.payment("/payments"), params={"order_id": stack.ids["order"]}, headers=customer
            )
            if r.status_code == 200 and r.json()["items"]:
                stack.ids["payment"] = r.json()["items"][0]["id"]
                break
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)


# --- 1. schemathesis over HTTP --------------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("caller", ["none", "customer", "admin"])
@pytest.mark.parametrize("package", [s.package for s in SERVICES])
def test_schemathesis_on_the_distributed_mode(stack: Stack, package: str, caller: str) -> None:
    schema = schemathesis.openapi.from_url(stack.url(package, "/openapi.json"))
    documented = sum(
        1
        for path, item in httpx.get(stack.url(package, "/openapi.json")).json()["paths"].items()
        for method in item
        if path != "/metrics" and method in {"get", "put", "post", "patch", "delete"}
    )
    failures: list[str] = []
    started, calls, operations = time.monotonic(), 0, 0
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation schemathesis cannot load fails here
        if operation.path == "/metrics":
            continue  # Prometheus text; covered by the service tests
        operations += 1
        calls += sum(run_operation(operation, stack.headers[caller], failures, MAX_EXAMPLES).values())
    print(  # noqa: T201
        f"\n[fuzz-dist] {package} as {caller}: {operations} operations, {calls} requests, "
        f"{time.monotonic() - started:.1f}s"
    )
    assert operations == documented > 0, f"{operations} of {documented} operations exercised"
    assert calls >= operations
    assert not failures, "\n".join(failures[:20])


# --- 2. values PostgreSQL refuses, in every text field ----------------------------------------------

POISON_TEXT = {
    "nul": "a\x00b",
    "lone-surrogate": "a\ud800b",
    "noncharacter": "a\uffffb",
    "right-to-left-override": "\u202eevil",
    "combining": "e\u0301\u0301\u0301",
    "astral": "\U0001d518\U0001f600",
    "zero-width": "a\u200bb\ufeff",
}
POISON_INT = {"2**63": 2**63, "-(2**63)-1": -(2**63) - 1, "10**30": 10**30}


def bodies(stack: Stack) -> dict[tuple[str, str, str], tuple[str, dict[str, Any]]]:
    """(package, METHOD, path template) -> (caller, a valid body): every operation with a request body."""
    ids = stack.ids
    unique = uuid.uuid4().hex[:8]
    return {
        ("user_service", "POST", "/auth/register"): (
            "none",
            {
                "email": f"p-{unique}@example.com",
                "password": "poison-pass-1",
                "full_name": "P",
                "phone": "+1 555",
            },
        ),
        ("user_service", "POST", "/auth/login"): (
            "none",
            {
                "grant_type": "password",
                "username": "nobody@example.com",
                "password": "x",
                "scope": "",
                "client_id": "c",
                "client_secret": "s",
            },
        ),
        ("user_service", "POST", "/auth/refresh"): ("none", {"refresh_token": "not-a-token"}),
        ("user_service", "POST", "/auth/logout"): ("none", {"refresh_token": "not-a-token"}),
        ("user_service", "PATCH", "/users/me"): (
            "customer",
            {
                "full_name": "Fuzz",
                "phone": "+1 555 0100",
                "email": f"fuzz-x-{unique}@example.com",
                "password": "poison-pass-2",
                "current_password": "wrong-password",
            },
        ),
        ("user_service", "PATCH", "/users/{user_id}"): ("admin", {"role": "customer", "is_active": True}),
        ("product_service", "POST", "/products"): (
            "admin",
            {
                "sku": f"P-{unique}",
                "name": "Poison",
                "description": "d",
                "price_cents": 100,
                "currency": "USD",
                "category_id": None,
            },
        ),
        ("product_service", "PATCH", "/products/{product_id}"): (
            "admin",
            {
                "sku": f"Q-{unique}",
                "name": "Renamed",
                "description": "d",
                "price_cents": 100,
                "currency": "USD",
                "category_id": None,
            },
        ),
        ("product_service", "POST", "/categories"): ("admin", {"name": f"Cat {unique}", "description": "d"}),
        ("product_service", "POST", "/products/{product_id}/reviews"): (
            "customer",
            {"rating": 4, "comment": "ok"},
        ),
        ("inventory_service", "POST", "/stock/{product_id}/adjustments"): (
            "admin",
            {"delta": 1, "reason": "r"},
        ),
        ("order_service", "POST", "/orders"): (
            "customer",
            {
                "items": [{"product_id": ids["product"], "quantity": 1}],
                "shipping_address": {
                    "name": "N",
                    "line1": "1 St",
                    "line2": "Apt 2",
                    "city": "C",
                    "postal_code": "1000",
                    "country": "US",
                },
            },
        ),
        ("notification_service", "PUT", "/preferences"): ("customer", {"email": True, "sms": False}),
        ("payment_service", "POST", "/payments/{payment_id}/simulate"): ("customer", {"outcome": "failed"}),
        ("payment_service", "POST", "/webhook"): (
            "none",
            {"id": "evt_1", "type": "payment_intent.succeeded"},
        ),
    }


def _concrete(stack: Stack, path: str) -> str:
    ids = stack.ids
    values = {
        "{user_id}": ids["customer"],
        "{product_id}": ids["product"],
        "{payment_id}": ids["payment"],
        "{order_id}": ids["order"],
    }
    for name, value in values.items():
        path = path.replace(name, value)
    assert "{" not in path, path
    return path


def _leaves(body: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(body, dict):
        for k, v in body.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(body, list):
        for i, v in enumerate(body):
            yield from _leaves(v, (*prefix, i))
    else:
        yield prefix, body


def _set(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def _string_properties(openapi: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted names of the string properties of a request schema (through $ref, anyOf, arrays)."""
    if "$ref" in schema:
        return _string_properties(
            openapi, openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], prefix
        )
    found: set[str] = set()
    for option in schema.get("anyOf", []):
        found |= _string_properties(openapi, option, prefix)
    if schema.get("type") == "string" and prefix:
        found.add(prefix)
    if schema.get("type") == "array" and "items" in schema:
        found |= _string_properties(openapi, schema["items"], prefix)
    for name, sub in schema.get("properties", {}).items():
        found |= _string_properties(openapi, sub, f"{prefix}.{name}" if prefix else name)
    return found


def _problem_or_round_trip(response: httpx.Response, sent: Any, where: tuple[Any, ...]) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:200]}"
    if 400 <= response.status_code < 500:
        if not response.headers.get("content-type", "").startswith("application/problem+json"):
            return f"{response.status_code} without problem+json: {response.text[:200]}"
        return None
    # Accepted: where the answer carries the field, it carries exactly what was sent.
    try:
        got: Any = response.json()
    except ValueError:
        return None
    for step in where:
        if isinstance(got, dict) and step in got:
            got = got[step]
        elif isinstance(got, list) and isinstance(step, int) and step < len(got):
            got = got[step]
        else:
            return None
    if isinstance(sent, str) and isinstance(got, str) and got != sent:
        return f"accepted {sent!r} but gave back {got!r}"
    return None


def test_every_text_field_of_every_request_body_is_covered(stack: Stack) -> None:
    covered = bodies(stack)
    missing = []
    for svc in SERVICES:
        openapi = httpx.get(stack.url(svc.package, "/openapi.json")).json()
        for path, item in openapi["paths"].items():
            for method, operation in item.items():
                content = (operation.get("requestBody") or {}).get("content", {})
                if not content:
                    continue
                key = (svc.package, method.upper(), path)
                if key not in covered:
                    missing.append(f"{key}: no body in bodies()")
                    continue
                schema = next(iter(content.values()))["schema"]
                fields = _string_properties(openapi, schema)
                sent = {
                    ".".join(str(p) for p in where if not isinstance(p, int))
                    for where, _ in _leaves(covered[key][1])
                }
                missing += [f"{key}: text field {f} not in its body" for f in sorted(fields - sent)]
    assert not missing, "\n".join(missing)


@pytest.mark.timeout(600)
def test_postgres_only_input_failures_never_answer_5xx(stack: Stack) -> None:
    failures: list[str] = []
    requests = 0
    with httpx.Client(timeout=30) as client:
        for (package, method, path), (caller, base) in bodies(stack).items():
            url = stack.url(package, _concrete(stack, path))
            form = path == "/auth/login"
            for where, value in _leaves(base):
                poisons: dict[str, Any] = {}
                if isinstance(value, str) or value is None:  # None: an optional text field (uuid, ...)
                    poisons = POISON_TEXT
                elif isinstance(value, int) and not isinstance(value, bool):
                    poisons = POISON_INT
                for name, poison in poisons.items():
                    body = _set(base, where, poison)
                    if form:
                        form_body = urlencode(
                            {k: str(v).encode("utf-8", "surrogatepass") for k, v in body.items()}
                        )
                        content, ctype = form_body.encode(), "application/x-www-form-urlencoded"
                    else:  # json.dumps escapes a lone surrogate as \ud800 (valid JSON text)
                        content, ctype = json.dumps(body).encode(), "application/json"
                    requests += 1
                    try:
                        response = client.request(
                            method,
                            url,
                            content=content,
                            headers={"content-type": ctype, **stack.headers[caller]},
                        )
                    except httpx.TransportError as exc:
                        failures.append(f"{method} {path} {'.'.join(map(str, where))}={name}: {exc!r}")
                        continue
                    problem = _problem_or_round_trip(response, poison, where)
                    if problem:
                        failures.append(f"{method} {path} {'.'.join(map(str, where))}={name}: {problem}")
        # Text query parameters: search, filters.
        for package, path, param, caller in (
            ("user_service", "/users", "q", "admin"),
            ("product_service", "/products", "q", "none"),
            ("product_service", "/products", "sort", "none"),
            ("order_service", "/orders", "status", "admin"),
            ("notification_service", "/deliveries", "status", "admin"),
        ):
            for name, poison in POISON_TEXT.items():
                # Percent-encoded UTF-8 (a lone surrogate as its WTF-8 bytes, which no decoder accepts).
                raw = quote(poison.encode("utf-8", "surrogatepass"), safe="")
                requests += 1
                try:
                    response = client.get(
                        f"{stack.url(package, path)}?{param}={raw}", headers=stack.headers[caller]
                    )
                except httpx.TransportError as exc:
                    failures.append(f"GET {path}?{param}={name}: {exc!r}")
                    continue
                problem = _problem_or_round_trip(response, None, ())
                if problem:
                    failures.append(f"GET {path}?{param}={name}: {problem}")
    print(f"\n[fuzz-dist] {requests} requests with values PostgreSQL refuses or odd Unicode")  # noqa: T201
    assert requests > 100
    assert not failures, "\n".join(failures)


# --- 3. stateful: the saga's operations chained with the ids they return -----------------------------

STATEFUL_RUNS = int(os.environ.get("MART_FUZZ_STATEFUL_RUNS", "10"))
# Each of these must have succeeded (2xx) at least this often on real ids in a run: the saga's own paths.
REACHED_AT_LEAST = 2


class Saga(RuleBasedStateMachine):
    """A customer and the admin drive orders through the saga in generated sequences: place, pay, fail a
    payment, cancel (a paid order: refund), ship, deliver, review. Every step uses ids the previous steps
    got from the API, the model says which answer each call must get (the order's state machine, one review
    per customer and product), and each step waits for the events it causes to settle."""

    stack: Stack
    calls: Counter

    def __init__(self) -> None:
        super().__init__()
        self.client = httpx.Client(timeout=30)
        self.orders: dict[str, str] = {}  # order id -> status the model expects
        # A product of this run's own to review (one review per customer and product); no login here: the
        # schemathesis runs on this stack may have throttled logins from this address.
        self.reviewed = False
        body = {
            "sku": f"SG-{uuid.uuid4().hex[:8]}",
            "name": "Saga mug",
            "price_cents": 500,
            "currency": "USD",
        }
        r = self.client.post(
            self.stack.ep.product("/products"), json=body, headers=self.stack.headers["admin"]
        )
        assert r.status_code == 201, r.text
        self.review_product = r.json()["id"]

    def teardown(self) -> None:
        for order_id, status in self.orders.items():
            assert self._order(order_id)["status"] == status, order_id
        self.client.close()

    # --- helpers ------------------------------------------------------------------------------------

    def _call(self, what: str, method: str, url: str, expected: int, **kwargs: Any) -> httpx.Response:
        r = self.client.request(method, url, **kwargs)
        self.calls[f"{what} {r.status_code}"] += 1
        assert r.status_code == expected, f"{what}: {method} {url} -> {r.status_code} {r.text[:300]}"
        return r

    def _order(self, order_id: str) -> dict[str, Any]:
        r = self.client.get(self.stack.ep.order(f"/orders/{order_id}"), headers=self.stack.headers["admin"])
        assert r.status_code == 200, r.text
        return r.json()

    def _until(self, check: Any, what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := check()):
            assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
            time.sleep(0.1)
        return found

    def _payment(self, order_id: str, status: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            r = self.client.get(
                self.stack.ep.payment("/payments"),
                params={"order_id": order_id},
                headers=self.stack.headers["admin"],
            )
            items = r.json()["items"]
            return items[0] if items and items[0]["status"] == status else None

        return self._until(found, f"payment of {order_id} {status}")

    def _with(self, *statuses: str) -> list[str]:
        return sorted(o for o, s in self.orders.items() if s in statuses)

    # --- rules --------------------------------------------------------------------------------------

    @rule(quantity=st.integers(1, 3))
    def place(self, quantity: int) -> None:
        body = {
            "items": [{"product_id": self.stack.ids["product"], "quantity": quantity}],
            "shipping_address": {
                "line1": "1 Saga St",
                "city": "Fuzz",
                "postal_code": "1000",
                "country": "US",
            },
        }
        r = self._call(
            "place",
            "POST",
            self.stack.ep.order("/orders"),
            201,
            json=body,
            headers=self.stack.headers["customer"],
        )
        order_id = r.json()["id"]
        order = self._until(
            lambda: (o := self._order(order_id))["status"] != "PENDING" and o, "stock decided"
        )
        assert order["status"] == "AWAITING_PAYMENT", order  # plenty of stock
        self._payment(order_id, "REQUIRES_PAYMENT")
        self.orders[order_id] = "AWAITING_PAYMENT"

    def _pay(self, order_id: str, outcome: str) -> None:
        payment = self._payment(order_id, "REQUIRES_PAYMENT")
        url = self.stack.ep.payment(f"/payments/{payment['id']}/simulate")
        self._call(
            f"pay {outcome}",
            "POST",
            url,
            202,
            json={"outcome": outcome},
            headers=self.stack.headers["customer"],
        )
        wanted = "PAID" if outcome == "succeeded" else "CANCELLED"
        self._until(lambda: self._order(order_id)["status"] == wanted, f"{order_id} {wanted}")
        self.orders[order_id] = wanted

    @precondition(lambda self: self._with("AWAITING_PAYMENT"))
    @rule(data=st.data())
    def pay(self, data: st.DataObject) -> None:
        self._pay(data.draw(st.sampled_from(self._with("AWAITING_PAYMENT"))), "succeeded")

    @precondition(lambda self: self._with("AWAITING_PAYMENT"))
    @rule(data=st.data())
    def fail_payment(self, data: st.DataObject) -> None:
        self._pay(data.draw(st.sampled_from(self._with("AWAITING_PAYMENT"))), "failed")

    @precondition(lambda self: self._with("AWAITING_PAYMENT", "PAID"))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self._with("AWAITING_PAYMENT", "PAID")))
        before = self.orders[order_id]
        url = self.stack.ep.order(f"/orders/{order_id}/cancel")
        self._call(f"cancel {before}", "POST", url, 200, headers=self.stack.headers["customer"])
        self.orders[order_id] = "CANCELLED"
        if before == "PAID":  # refunded, once
            self._payment(order_id, "REFUNDED")
            self.calls["refund reached"] += 1

    @precondition(lambda self: self._with("PAID"))
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self._with("PAID")))
        self._call(
            "ship",
            "POST",
            self.stack.ep.order(f"/orders/{order_id}/ship"),
            200,
            headers=self.stack.headers["admin"],
        )
        self.orders[order_id] = "SHIPPED"

    @precondition(lambda self: self._with("SHIPPED"))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self._with("SHIPPED")))
        url = self.stack.ep.order(f"/orders/{order_id}/deliver")
        self._call("deliver", "POST", url, 200, headers=self.stack.headers["admin"])
        self.orders[order_id] = "DELIVERED"

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), transition=st.sampled_from(["ship", "deliver", "cancel"]))
    def forbidden(self, data: st.DataObject, transition: str) -> None:
        """A transition the order's state machine forbids (ship what is not paid, deliver what is not shipped,
        cancel what is shipped, delivered or cancelled): 409, and the order unchanged."""
        allowed_from = {"ship": {"PAID"}, "deliver": {"SHIPPED"}, "cancel": {"AWAITING_PAYMENT", "PAID"}}
        candidates = [o for o, now in sorted(self.orders.items()) if now not in allowed_from[transition]]
        if not candidates:
            return
        order_id = data.draw(st.sampled_from(candidates))
        url = self.stack.ep.order(f"/orders/{order_id}/{transition}")
        self._call(f"{transition} refused", "POST", url, 409, headers=self.stack.headers["admin"])

    @precondition(lambda self: not self.reviewed)
    @rule(rating=st.integers(1, 5))
    def review(self, rating: int) -> None:
        """Once per customer and product: 201, then 409 already-reviewed."""
        url = self.stack.ep.product(f"/products/{self.review_product}/reviews")
        body = {"rating": rating, "comment": "ok"}
        customer = self.stack.headers["customer"]
        self._call("review", "POST", url, 201, json=body, headers=customer)
        self._call("review again", "POST", url, 409, json=body, headers=customer)
        self.reviewed = True


@pytest.mark.timeout(900)
def test_stateful_fuzzing_reaches_every_step_of_the_saga_with_real_ids(stack: Stack) -> None:
    calls: Counter = Counter()
    Saga.stack, Saga.calls = stack, calls
    started = time.monotonic()
    run_state_machine_as_test(
        Saga,
        settings=settings(
            max_examples=STATEFUL_RUNS,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\n[fuzz-dist] stateful: {dict(sorted(calls.items()))}, {time.monotonic() - started:.1f}s")  # noqa: T201
    reached = {
        "place": calls["place 201"],
        "pay": calls["pay succeeded 202"],
        "fail a payment": calls["pay failed 202"],
        "a forbidden transition refused": sum(
            calls[f"{t} refused 409"] for t in ("ship", "deliver", "cancel")
        ),
        "cancel": calls["cancel AWAITING_PAYMENT 200"] + calls["cancel PAID 200"],
        "refund (cancel of a paid order)": calls["refund reached"],
        "ship": calls["ship 200"],
        "deliver": calls["deliver 200"],
        "review": calls["review 201"],
    }
    assert all(n >= REACHED_AT_LEAST for n in reached.values()), reached
