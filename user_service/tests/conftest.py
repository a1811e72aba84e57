"""Fixtures of the user service's tests: an app on a fresh database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mart_common.bus import EventBus
from mart_testkit.fixtures import running
from user_service.keys import KeyStore
from user_service.main import create_app
from user_service.settings import UserSettings

ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "admin-password-1"  # noqa: S105 (test credential)

# Argon2 at minimum cost so the suite stays fast; production uses pwdlib's defaults
# (docs/api.md, "Accounts, tokens and sessions").
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8, "argon2_parallelism": 1}


@pytest.fixture(scope="session")
def user_keys() -> KeyStore:
    return KeyStore.generate()


@pytest.fixture
def user_settings(database_url: str, tmp_path: Path) -> Callable[..., UserSettings]:
    def _make(**overrides: Any) -> UserSettings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "event_bus": "inprocess",
            "inprocess_bus_url": f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}",
            "data_dir": tmp_path,
            "admin_email": ADMIN_EMAIL,
            "admin_password": ADMIN_PASSWORD,
            "log_json": False,
            **FAST_ARGON2,
        }
        values.update(overrides)
        return UserSettings(**values)

    return _make


@pytest.fixture
def user_client(
    user_settings: Callable[..., UserSettings], user_keys: KeyStore
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with user_client(**settings_overrides) as client`` — the running user service."""

    @asynccontextmanager
    async def _client(
        *, bus: EventBus | None = None, keys: KeyStore | None = None, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(user_settings(**overrides), bus=bus, keys=keys or user_keys)
        async with running(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return _client


async def register(
    client: httpx.AsyncClient, email: str, password: str = "correct-horse", **extra: Any
) -> dict:
    response = await client.post(
        "/auth/register", json={"email": email, "password": password, "full_name": "Test User", **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login(client: httpx.AsyncClient, email: str, password: str = "correct-horse") -> dict:
    response = await client.post("/auth/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def api() -> Any:
    """The helpers above, for test modules (importlib mode cannot import conftest directly)."""
    from types import SimpleNamespace

    return SimpleNamespace(register=register, login=login, bearer=bearer, admin=(ADMIN_EMAIL, ADMIN_PASSWORD))
