"""The web front's tests run it where users meet it: inside the embedded mart (the six services on SQLite and
the in-process bus, demo data seeded), reached over ASGI by clients that keep cookies like a browser.
Real browsers drive it in tests/e2e/test_web_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mart_cli import embedded
from mart_cli.credentials import Credentials

BASE = "http://shop.test"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Mart:
    emb: embedded.Embedded
    creds: Credentials

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.emb.app)


class Browser:
    """A cookie-keeping client of the web front (what a browser does, minus the rendering)."""

    def __init__(self, mart: Mart) -> None:
        self.mart = mart
        self.http = httpx.AsyncClient(transport=mart.transport(), base_url=BASE, follow_redirects=False)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def csrf_token(self, page: str = "/login") -> str:
        match = CSRF.search((await self.get(page)).text)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, page: str = "/login"
    ) -> httpx.Response:
        """Submit a form the way the page would: with this browser's CSRF token."""
        return await self.http.post(path, data={"csrf_token": await self.csrf_token(page), **(data or {})})

    async def sign_in(self, email: str, password: str) -> httpx.Response:
        answer = await self.post("/login", {"email": email, "password": password, "next": "/"})
        assert answer.status_code == 303, answer.text
        return answer

    async def as_customer(self) -> Browser:
        await self.sign_in(self.mart.creds.customer.email, self.mart.creds.customer.password)
        return self

    async def as_admin(self) -> Browser:
        await self.sign_in(self.mart.creds.admin.email, self.mart.creds.admin.password)
        return self


@pytest.fixture(scope="module")
async def mart(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mart]:
    data_dir: Path = tmp_path_factory.mktemp("web") / "data"
    emb = embedded.build(data_dir, seed=True, public_url=BASE, say=lambda _m: None)
    async with emb.app.router.lifespan_context(emb.app):
        yield Mart(emb, emb.creds)


@pytest.fixture
async def browser(mart: Mart) -> AsyncIterator[Callable[[], Awaitable[Browser]]]:
    """Opens fresh browsers (each its own cookies) on the mart."""
    opened: list[Browser] = []

    async def open_browser() -> Browser:
        b = Browser(mart)
        opened.append(b)
        return b

    yield open_browser
    for b in opened:
        await b.aclose()


async def api_token(mart: Mart, email: str, password: str) -> str:
    """An access token straight from the user service (for setting up data through the APIs)."""
    async with httpx.AsyncClient(transport=mart.transport(), base_url=BASE) as http:
        answer = await http.post("/user-service/auth/login", data={"username": email, "password": password})
        answer.raise_for_status()
        return answer.json()["access_token"]
