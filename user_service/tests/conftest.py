"""Fixtures of the user service's tests: the service on a fresh database (SQLite and PostgreSQL), its signing
keys, and helpers that register and log in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mart_testkit.service import service_fixtures
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


# service_settings(**overrides), service_client(**overrides): the running user service, signing (and
# verifying its own access tokens) with the session's user_keys unless a test passes keys=...
service_settings, service_client = service_fixtures(
    create_app,
    UserSettings,
    settings={"admin_email": ADMIN_EMAIL, "admin_password": ADMIN_PASSWORD, **FAST_ARGON2},
    injected=lambda request: {"keys": request.getfixturevalue("user_keys")},
)


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
