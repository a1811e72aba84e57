# ruff: noqa: E402  (the sys.modules fix-up must run before the service imports)
"""The whole mart in one process (the embedded mode: six services, SQLite, in-process bus) for the
security tests, with helpers to log in, mint forged tokens and walk every operation."""

from __future__ import annotations

import sys

for _pkg in ("payment_service", "notification_service"):
    # importlib mode may register the workspace folder as a namespace stand-in: use the installed package.
    if getattr(sys.modules.get(_pkg), "__file__", None) is None:
        sys.modules.pop(_pkg, None)

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mart_testkit.fixtures import running

from mart_cli import embedded
from mart_cli.services import SERVICES


@dataclass
class Mart:
    client: httpx.AsyncClient
    built: Any
    data_dir: Path
    keys: Any  # user_service.keys.KeyStore: the real signing key (to forge variants of real tokens)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def openapi(self, package: str) -> dict[str, Any]:
        return self.built.service_apps[package].openapi()

    async def register_and_login(self, who: str, password: str = "correct-horse-battery") -> None:
        email = f"{who}-{uuid.uuid4().hex[:8]}@example.com"
        r = await self.client.post(
            "/user-service/auth/register", json={"email": email, "password": password, "full_name": who}
        )
        assert r.status_code == 201, r.text
        self.ids[who] = r.json()["id"]
        await self.login(who, email, password)

    async def login(self, who: str, email: str, password: str) -> dict[str, Any]:
        r = await self.client.post("/user-service/auth/login", data={"username": email, "password": password})
        assert r.status_code == 200, r.text
        pair = r.json()
        self.tokens[who] = pair["access_token"]
        self.tokens[who + "_refresh"] = pair["refresh_token"]
        return pair


@pytest.fixture(scope="module")
async def mart(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mart]:
    data_dir = tmp_path_factory.mktemp("mart")
    built = embedded.build(data_dir, seed=False, say=lambda _m: None)
    async with running(built.app) as client:
        users = built.service_apps["user_service"].state.runtime.context
        m = Mart(client=client, built=built, data_dir=data_dir, keys=users.keys)
        await m.login("admin", built.creds.admin.email, built.creds.admin.password)
        await m.register_and_login("alice")
        await m.register_and_login("bob")
        yield m


PACKAGES = [svc.package for svc in SERVICES]
