# ruff: noqa: E402  (the sys.modules fix-up must run before the service imports)
"""Property-based tests over every operation of the six OpenAPI schemas (schemathesis + hypothesis).

Each service runs as its own ASGI app (SQLite, in-process bus, fake payment provider) with the lifespan
started by schemathesis. For each service and each caller (no token, a customer, an admin: real accounts
with real RS256 tokens), every operation gets up to ``MAX_EXAMPLES`` generated requests (schemathesis'
positive AND negative generation modes: valid and invalid inputs; derandomized for CI). Expected: no 5xx
anywhere (schemathesis ``not_a_server_error``) and every 4xx answered as ``application/problem+json``
with a matching ``status``.
"""

from __future__ import annotations

import sys

for _pkg in ("payment_service", "notification_service"):
    if getattr(sys.modules.get(_pkg), "__file__", None) is None:
        sys.modules.pop(_pkg, None)

import os
import tempfile
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from mart_cli.services import SERVICES

MAX_EXAMPLES = int(os.environ.get("MART_FUZZ_EXAMPLES", "25"))
ADMIN_EMAIL, ADMIN_PASSWORD = "fuzz-admin@example.com", "fuzz-admin-password-1"  # noqa: S105 (test account)
CUSTOMER_EMAIL, CUSTOMER_PASSWORD = "fuzz-customer@example.com", "fuzz-customer-password-1"  # noqa: S105

# schemathesis checks on every response: no 5xx; the status code is one the operation documents; the body
# matches the documented schema of that status; invalid input (negative mode) is rejected with a 4xx.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, negative_data_rejection]

_DIR = Path(tempfile.mkdtemp(prefix="mart-fuzz-"))


@cache
def _keys() -> Any:
    from user_service.keys import KeyStore

    return KeyStore.generate()


@cache
def app_of(package: str) -> Any:
    svc = next(s for s in SERVICES if s.package == package)
    data_dir = _DIR / package
    data_dir.mkdir(parents=True, exist_ok=True)
    settings_ = svc.settings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'db.sqlite'}",
        event_bus="inprocess",
        inprocess_bus_url=f"sqlite+aiosqlite:///{data_dir / 'bus.sqlite'}",
        data_dir=data_dir,
        log_json=False,
        log_level="ERROR",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        argon2_time_cost=1,
        argon2_memory_cost=8,
        argon2_parallelism=1,
        login_max_failures_per_account=1_000_000,
        login_max_failures_per_client=1_000_000,
        payment_provider="fake",
        email_backend="file",
    )
    main = svc.main_module()
    keys = _keys()
    verifier = keys.verifier("mart-user-service")
    if package == "user_service":
        return main.create_app(settings_, token_verifier=verifier, keys=keys)
    return main.create_app(settings_, token_verifier=verifier)


@cache
def schema_of(package: str) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app_of(package))


@cache
def tokens() -> dict[str, dict[str, str]]:
    """Real accounts: the admin created at start and a registered customer, logged in for real."""
    with asgi.get_client(app_of("user_service")) as client:
        client.post(
            "/auth/register",
            json={"email": CUSTOMER_EMAIL, "password": CUSTOMER_PASSWORD, "full_name": "Fuzz"},
        )
        out: dict[str, dict[str, str]] = {"none": {}}
        for who, email, password in (
            ("admin", ADMIN_EMAIL, ADMIN_PASSWORD),
            ("customer", CUSTOMER_EMAIL, CUSTOMER_PASSWORD),
        ):
            r = client.post("/auth/login", data={"username": email, "password": password})
            assert r.status_code == 200, r.text
            out[who] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return out


def _check_problem(response: Any, label: str) -> str | None:
    if 400 <= response.status_code < 500:
        ctype = response.headers.get("content-type", "")
        if isinstance(ctype, list):  # schemathesis' Response: lower-case keys, list values
            ctype = ctype[0] if ctype else ""
        if not ctype.startswith("application/problem+json"):
            return f"{label}: {response.status_code} with content-type {ctype!r}: {response.text[:200]}"
        try:
            body = response.json()
        except Exception:
            return f"{label}: {response.status_code} problem+json that is not JSON"
        if body.get("status") != response.status_code or not body.get("type") or not body.get("title"):
            return f"{label}: {response.status_code} problem body {body!r}"
    return None


def documented_operations(package: str) -> set[str]:
    """``METHOD /path`` of every operation in the service's OpenAPI document (but ``/metrics``)."""
    paths = app_of(package).openapi()["paths"]
    return {
        f"{method.upper()} {path}"
        for path, item in paths.items()
        if path != "/metrics"
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def has_inputs(operation: Any) -> bool:
    """Whether the operation takes parameters or a body (else there is nothing to make invalid)."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def run_operation(
    operation: Any, headers: dict[str, str], failures: list[str], max_examples: int = MAX_EXAMPLES
) -> Counter[str]:
    """Fuzz one operation; returns the requests sent per generation mode (``positive``/``negative``)."""
    calls: Counter[str] = Counter()
    # Valid data, and invalid data too (wrong types, missing fields, out-of-range values), each case tagged
    # with the mode that made it.
    strategies = [
        operation.as_strategy(mode).map(lambda case, mode=mode: (mode.value, case))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]

    @given(tagged=st.one_of(*strategies))
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def _one(tagged: tuple[str, Any]) -> None:
        mode, case = tagged
        if headers:
            case.headers = {**(case.headers or {}), **headers}
        response = case.call()
        calls[mode] += 1
        label = f"{operation.method.upper()} {operation.path} -> {case.formatted_path}"
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis' FailureGroup is not an AssertionError
            failures.append(f"{label}: {response.status_code} {response.text[:300]} ({str(exc)[:200]})")
            raise
        problem = _check_problem(response, label)
        if problem:
            failures.append(problem)
            raise AssertionError(problem)

    before = len(failures)
    try:
        _one()
    except Exception as exc:  # recorded in failures; keep fuzzing the other operations
        if len(failures) == before:
            failures.append(
                f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:300]}"
            )
    return calls


@pytest.mark.parametrize("caller", ["none", "customer", "admin"])
@pytest.mark.parametrize("package", [s.package for s in SERVICES])
def test_no_5xx_and_problem_json_on_every_4xx(package: str, caller: str) -> None:
    schema = schema_of(package)
    headers = tokens()[caller]
    failures: list[str] = []
    started, per_operation, unexercised = time.monotonic(), {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/metrics":
            continue  # Prometheus text; covered by the service tests
        label = f"{operation.method.upper()} {operation.path}"
        calls = per_operation[label] = run_operation(operation, headers, failures)
        # Every documented operation is exercised, with invalid input too wherever it takes any.
        wanted = ("positive", "negative") if has_inputs(operation) else ("positive",)
        unexercised += [f"{label}: no {mode} request" for mode in wanted if not calls[mode]]
    total = sum(sum(c.values()) for c in per_operation.values())
    print(
        f"\n[fuzz] {package} as {caller}: {len(per_operation)} operations, {total} requests, "  # noqa: T201
        f"{time.monotonic() - started:.1f}s"
    )
    assert set(per_operation) == documented_operations(package)
    assert not unexercised, unexercised
    assert not failures, "\n".join(failures[:20])


def test_tokens_are_real() -> None:
    """The authenticated runs really authenticate (otherwise they would only fuzz the 401 path)."""
    with asgi.get_client(app_of("order_service")) as client:
        assert client.get("/orders", headers=tokens()["customer"]).status_code == 200
        assert client.get("/orders", headers=tokens()["admin"]).status_code == 200
        assert client.get("/orders").status_code == 401
