"""Test support shared by every service's tests (a pytest plugin loaded by the root ``conftest.py``).

- ``backend`` / ``database_url``: tests parametrised over SQLite (a temp file) and the real PostgreSQL
  server (a throwaway database created through the ``mart_test`` role, dropped afterwards).
- ``bus_kind`` / ``make_bus``: the in-process bus (temp SQLite log) or the real Kafka broker (topics and
  groups isolated by a per-test namespace).
- ``jwt_keys``: an RSA key pair that mints access/refresh tokens for any role, and a verifier for them.
- ``running(app)``: an ``httpx.AsyncClient`` over ASGI with the app's lifespan running (a service's own
  tests: ``service_client`` in its conftest, built on ``mart_testkit.service``).
- ``eventually(check)``: poll until an eventually-consistent effect shows up.

Nothing here skips: when PostgreSQL or Kafka is unreachable, the tests that need them fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from mart_common.auth import TokenVerifier
from mart_common.bus import EventBus, RetryPolicy, create_bus
from mart_common.polling import PollTimeout, wait_until
from mart_common.settings import ServiceSettings

from mart_testkit.kafka import KAFKA_BOOTSTRAP, delete_namespace, new_namespace

POSTGRES_ADMIN_DSN = os.environ.get(
    "MART_TEST_POSTGRES_DSN", "postgresql://mart_test@127.0.0.1:5432/mart_test"
)
ISSUER = "mart-user-service"

T = TypeVar("T")


# --- databases -------------------------------------------------------------------------------


async def create_postgres_database() -> str:
    """Create an empty database on the real server; returns its asyncpg SQLAlchemy URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both database backends."""
    return request.param


@pytest.fixture
async def database_url(backend: str, tmp_path: Any) -> AsyncIterator[str]:
    """A fresh, empty database of the chosen backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.sqlite'}"
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def new_database(
    tmp_path: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Factory: ``await new_database(backend)`` → URL of another empty database (dropped at teardown)."""
    created: list[str] = []

    async def _make(kind: str) -> str:
        if kind == "postgres":
            request.node.add_marker(pytest.mark.postgres)
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / (uuid.uuid4().hex[:8] + '.sqlite')}"
        url = await create_postgres_database()
        created.append(url)
        return url

    yield _make
    for url in created:
        await drop_postgres_database(url)


# --- buses -----------------------------------------------------------------------------------

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture(params=["inprocess", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_kind(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both bus adapters."""
    return request.param


@pytest.fixture
async def make_bus(tmp_path: Any, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., EventBus]]:
    """Factory for a bus of a kind; Kafka buses of one test share a namespace (same topics), deleted after
    the test."""
    namespace = new_namespace()
    used_kafka = False

    def _make(kind: str, retry: RetryPolicy = FAST_RETRY) -> EventBus:
        nonlocal used_kafka
        if kind == "kafka":
            request.node.add_marker(pytest.mark.kafka)
            used_kafka = True
        settings = ServiceSettings(
            service_name="online-mart-tests",
            event_bus="kafka" if kind == "kafka" else "inprocess",
            kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
            kafka_partitions=3,
            kafka_namespace=namespace,
            inprocess_bus_url=f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}",
            inprocess_partitions=3,
        )
        return create_bus(settings, retry=retry)

    yield _make
    if used_kafka:
        await delete_namespace(namespace)


@pytest.fixture
async def kafka_namespace(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace for services' settings (``kafka_namespace``) so a test has its own topics and groups;
    its topics are deleted after the test."""
    request.node.add_marker(pytest.mark.kafka)
    namespace = new_namespace()
    yield namespace
    await delete_namespace(namespace)


# --- tokens ----------------------------------------------------------------------------------


class JwtKeys:
    """A test RSA key pair that signs tokens the way the user service does."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key"
        self.public_pem = (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def verifier(self) -> TokenVerifier:
        async def _provider() -> dict[str, Any]:
            return self.jwks()

        return TokenVerifier(ISSUER, jwks_provider=_provider)

    def token(
        self,
        user_id: uuid.UUID | str | None = None,
        role: str = "customer",
        *,
        typ: str = "access",
        expires_in: timedelta = timedelta(minutes=15),
        **overrides: Any,
    ) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id or uuid.uuid4()),
            "role": role,
            "iss": ISSUER,
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
            "typ": typ,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def headers(self, user_id: uuid.UUID | str | None = None, role: str = "customer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}


@pytest.fixture(scope="session")
def jwt_keys() -> JwtKeys:
    return JwtKeys()


# --- apps ------------------------------------------------------------------------------------


C = TypeVar("C", bound=httpx.AsyncClient)


@asynccontextmanager
async def running(
    app: FastAPI, base_url: str = "http://testserver", client_cls: type[C] = httpx.AsyncClient
) -> AsyncIterator[C]:
    """An HTTP client (of ``client_cls``) for ``app`` with its lifespan (migrations, bus, relay, jobs)
    running. A service's own tests build it with ``service_client`` (``mart_testkit.service``)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with client_cls(transport=transport, base_url=base_url) as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "",
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Await ``check()`` until it returns a truthy value (errors in ``retry_on`` count as "not yet")."""
    try:
        return await wait_until(check, timeout=timeout, interval=interval, retry_on=retry_on)
    except PollTimeout as exc:
        what = message or repr(check)
        raise AssertionError(f"not true after {timeout}s: {what} (last: {exc.last!r})") from None
