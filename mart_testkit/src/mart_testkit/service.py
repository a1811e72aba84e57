"""One way to build a service under test and feed it events, for all six services' tests
(docs/adr/0046-test-support-package.md).

Each service's ``tests/conftest.py`` makes the same two fixtures with :func:`service_fixtures`:

- ``service_settings(**overrides)``: the service's settings on the test's database (``database_url``: SQLite
  or PostgreSQL), an in-process bus log and the data dir under ``tmp_path``;
- ``service_client(**overrides)``: ``async with service_client() as client`` runs the service (its
  lifespan: migrations, bus, relay, jobs) and gives a :class:`ServiceClient`. Overrides that
  ``create_app`` takes (``bus``, ``token_verifier``, ``provider``, ``senders``, ``keys``) go to it, the
  others are settings.

A :class:`ServiceClient` is an ``httpx.AsyncClient`` over ASGI with the running service's ``app``,
``runtime``, ``db`` and ``context``, and :meth:`ServiceClient.feed`, which delivers an event to the
service's consumer the way the bus does.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.message import Message
from mart_common.db import Database
from mart_common.messaging import Envelope
from mart_common.service import ServiceRuntime
from mart_common.settings import ServiceSettings

from mart_common import contracts
from mart_testkit.fixtures import running

S = TypeVar("S", bound=ServiceSettings)


def envelope_of(message: Message, key: str | None = None, *, source: str = "test-producer") -> Envelope:
    """The envelope a producer's outbox would publish for ``message`` (``key``: its aggregate id)."""
    return Envelope.new(
        type=contracts.ce_type(message),
        source=source,
        topic=contracts.topic_for(message),
        key=key or "test-key",
        payload=message.SerializeToString(),
    )


def settings_for(settings_cls: type[S], database_url: str, tmp_path: Path, **overrides: Any) -> S:
    """A service's settings for a test: its database, an in-process bus log and the data dir in
    ``tmp_path``, plain-text logs; ``overrides`` win."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "event_bus": "inprocess",
        "inprocess_bus_url": f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}",
        "data_dir": tmp_path,
        "log_json": False,
    }
    return settings_cls(**{**values, **overrides})


class ServiceClient(httpx.AsyncClient):
    """An HTTP client of one running service, with what a test needs to look inside it."""

    app: FastAPI

    @property
    def runtime(self) -> ServiceRuntime:
        return self.app.state.runtime

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def context(self) -> Any:
        """The service's typed context (the payment provider, the dispatcher, the keys...)."""
        return self.runtime.context

    async def feed(self, event: Message | Envelope, *, key: str | None = None) -> Envelope:
        """Deliver ``event`` (a message, or the envelope a producer published) to the service's consumer as
        the bus does, and return its envelope. When this returns, the handler ran and its transaction
        committed (with the event's inbox row); a handler that raises raises here."""
        envelope = event if isinstance(event, Envelope) else envelope_of(event, key)
        await self.runtime.subscriber(envelope.to_bus())
        return envelope


@asynccontextmanager
async def run_service(
    create_app: Callable[..., FastAPI], settings: ServiceSettings, **injected: Any
) -> AsyncIterator[ServiceClient]:
    """``create_app(settings, **injected)`` with its lifespan running, and a :class:`ServiceClient` of it.
    ``injected``: what the service's ``create_app`` takes besides the settings (a bus to share, a token
    verifier, a provider, senders, keys)."""
    app = create_app(settings, **injected)
    async with running(app, client_cls=ServiceClient) as client:
        client.app = app
        yield client


def verify_with_test_keys(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A service under test verifies access tokens with the session's test keys (``jwt_keys``)."""
    return {"token_verifier": request.getfixturevalue("jwt_keys").verifier()}


def service_fixtures(
    create_app: Callable[..., FastAPI],
    settings_cls: type[S],
    *,
    settings: Mapping[str, Any] | None = None,
    injected: Callable[[pytest.FixtureRequest], dict[str, Any]] = verify_with_test_keys,
) -> tuple[Any, Any]:
    """The ``service_settings`` and ``service_client`` fixtures of one service, for its conftest:
    ``service_settings, service_client = service_fixtures(create_app, XSettings)``.

    ``settings``: the service's test defaults (fast retries, short intervals); ``injected``: what
    ``create_app`` gets unless a test says otherwise (by default the test keys' token verifier).
    """
    accepted = set(inspect.signature(create_app).parameters) - {"settings"}

    @pytest.fixture
    def service_settings(database_url: str, tmp_path: Path) -> Callable[..., S]:
        def make(**overrides: Any) -> S:
            return settings_for(settings_cls, database_url, tmp_path, **{**(settings or {}), **overrides})

        return make

    @pytest.fixture
    def service_client(
        service_settings: Callable[..., S], request: pytest.FixtureRequest
    ) -> Callable[..., AbstractAsyncContextManager[ServiceClient]]:
        defaults = injected(request)

        def make(**overrides: Any) -> AbstractAsyncContextManager[ServiceClient]:
            given = {k: v for k, v in overrides.items() if k in accepted}
            values = {k: v for k, v in overrides.items() if k not in accepted}
            return run_service(create_app, service_settings(**values), **{**defaults, **given})

        return make

    return service_settings, service_client
