"""The sign-in a browser holds: an access token about to expire is refreshed before use, once per refresh
token however many requests of the browser need it at the same time (the user service revokes a login whose
used refresh token comes back), and a refresh the user service refuses signs the browser out."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest
from web_service.clients import Api, ServiceApis, SignInRequired
from web_service.session import Refresher, TokenPair, Visitor
from web_service.settings import WebSettings


def token(sub: str, *, expires_in: float, typ: str = "access", jti: str = "a") -> str:
    now = int(time.time())
    claims = {
        "sub": sub,
        "role": "customer",
        "exp": now + int(expires_in),
        "iat": now,
        "typ": typ,
        "jti": jti,
    }
    return jwt.encode(claims, "not-the-user-services-key-only-for-these-tests", algorithm="HS256")


class UserService:
    """Answers /auth/refresh like the user service: each refresh token once, rotated."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refreshes: list[str] = []
        self.refuse = refuse
        self.seen_bearers: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/refresh"):
            await asyncio.sleep(0.05)  # a real round trip: concurrent requests overlap it
            old = json.loads(request.content)["refresh_token"]
            if self.refuse or old in self.refreshes:
                return httpx.Response(
                    401, json={"type": "https://online-mart.dev/problems/invalid-refresh-token"}
                )
            self.refreshes.append(old)
            n = len(self.refreshes)
            return httpx.Response(
                200,
                json={
                    "access_token": token("u1", expires_in=900, jti=f"a{n}"),
                    "refresh_token": token("u1", expires_in=7 * 86400, typ="refresh", jti=f"r{n}"),
                },
            )
        self.seen_bearers.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"id": "u1", "email": "ada@example.com", "full_name": "Ada"})


def signed_in_session(access_expires_in: float) -> dict:
    visitor = Visitor({})
    visitor.sign_in(
        TokenPair(
            token("u1", expires_in=access_expires_in), token("u1", expires_in=86400, typ="refresh", jti="r0")
        ),
        email="ada@example.com",
        name="Ada",
    )
    return visitor.session


@pytest.fixture
def service() -> UserService:
    return UserService()


def api_for(session: dict, service: UserService, refresher: Refresher) -> Api:
    apis = ServiceApis(WebSettings(gateway_url="http://gateway.test"), transport=httpx.MockTransport(service))
    return Api(apis, Visitor(session), refresher)


async def test_a_fresh_access_token_is_used_as_it_is(service: UserService) -> None:
    session = signed_in_session(600)
    before = session["auth"]["access"]
    await api_for(session, service, Refresher()).users.me()
    assert service.refreshes == [] and service.seen_bearers == [f"Bearer {before}"]


async def test_an_expiring_token_is_refreshed_once_for_concurrent_requests(service: UserService) -> None:
    refresher = Refresher()
    # five requests of one browser at once, each with the cookie as it was (the same old tokens)
    original = signed_in_session(5)
    copies = [dict(original) for _ in range(5)]
    results = await asyncio.gather(*(api_for(s, service, refresher).users.me() for s in copies))
    assert all(r["email"] == "ada@example.com" for r in results)
    assert len(service.refreshes) == 1, "one refresh for the lot"
    new_access = {s["auth"]["access"] for s in copies}
    assert len(new_access) == 1 and service.seen_bearers == [f"Bearer {new_access.pop()}"] * 5
    # a request that still carries the old cookie a moment later gets the same new pair, not a second refresh
    late = dict(original)
    await api_for(late, service, refresher).users.me()
    assert len(service.refreshes) == 1 and late["auth"]["refresh"] == copies[0]["auth"]["refresh"]


async def test_a_refused_refresh_signs_the_browser_out() -> None:
    service = UserService(refuse=True)
    session = signed_in_session(5)
    api = api_for(session, service, Refresher())
    assert await api.access_token() is None
    assert (
        len(service.refreshes) == 0
        and "auth" not in session
        and Visitor(session).pop_flashes()[0][1].startswith("Your session has ended")
    )


async def test_a_live_stream_never_refreshes(service: UserService) -> None:
    """Once a response has started its cookie cannot change: a refresh then would lose the new refresh
    token, and the next one would present the used one (the user service then ends the login)."""
    session = signed_in_session(5)
    api = api_for(session, service, Refresher())
    api.may_refresh = False
    with pytest.raises(SignInRequired):
        await api.users.me()
    assert service.refreshes == []
