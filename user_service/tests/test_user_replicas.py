"""Two replicas of the user service on one database (SQLite file and PostgreSQL): the login throttle
holds across them and across a restart. Key rotation: the JWKS served over real HTTP publishes the
current and the previous key, tokens signed by either verify at the user service and at a remote
verifier, the previous key stops verifying once retired, and the verifier refetches the JWKS at most
once per interval on unknown ``kid``s (fetches counted at the HTTP endpoint)."""

from __future__ import annotations

import asyncio
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from mart_common.auth import InvalidToken, TokenVerifier
from mart_testkit.service import run_service
from user_service.keys import KeyStore, load_or_create_keys, main
from user_service.main import create_app
from user_service.settings import UserSettings

THROTTLE = {"login_max_failures_per_account": 4, "login_max_failures_per_client": 100}


async def attempt(client: Any, email: str, password: str) -> int:
    r = await client.post("/auth/login", data={"username": email, "password": password})
    if r.status_code == 429:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert int(r.headers["Retry-After"]) >= 1
    return r.status_code


async def test_failures_on_one_replica_count_on_the_other_and_survive_a_restart(service_client, api) -> None:
    async with service_client(**THROTTLE) as a, service_client(**THROTTLE) as b:
        await api.register(a, "kim@example.com")
        # 2 failures on each replica: 4 in all, the account's limit (each replica alone saw only 2).
        assert [await attempt(c, "kim@example.com", "wrong-pass") for c in (a, b, a, b)] == [401] * 4
        assert await attempt(a, "kim@example.com", "correct-horse") == 429
        assert await attempt(b, "kim@example.com", "correct-horse") == 429
    async with service_client(**THROTTLE) as restarted:  # a new process on the same database
        assert await attempt(restarted, "kim@example.com", "correct-horse") == 429


async def test_client_limit_and_success_reset_hold_across_replicas(service_client, api) -> None:
    limits = {"login_max_failures_per_account": 3, "login_max_failures_per_client": 5}
    async with service_client(**limits) as a, service_client(**limits) as b:
        await api.register(a, "lou@example.com")
        await api.register(a, "max@example.com")
        # A success on one replica clears the account's failures made on the other.
        assert [await attempt(c, "lou@example.com", "wrong-pass") for c in (a, b)] == [401, 401]
        assert await attempt(a, "lou@example.com", "correct-horse") == 200
        assert [await attempt(c, "lou@example.com", "wrong-pass") for c in (b, a)] == [401, 401]
        assert await attempt(b, "lou@example.com", "correct-horse") == 200
        # The client (same address on both) has 4 failures; one more on unknown accounts, split over both.
        assert await attempt(b, "nobody@example.com", "wrong-pass") == 401
        assert await attempt(a, "max@example.com", "correct-horse") == 429
        assert await attempt(b, "max@example.com", "correct-horse") == 429


# --- key rotation over real HTTP ---------------------------------------------------------------


class SwitchableJwks:
    """An ASGI app in front of one user-service app at a time (the deployment before, during and after
    a rotation), counting the requests to the JWKS endpoint."""

    def __init__(self) -> None:
        self.app: Any = None
        self.jwks_fetches = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/.well-known/jwks.json":
            self.jwks_fetches += 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def serve(asgi: Any) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(asgi, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pem(store: KeyStore, public: bool = False) -> str:
    if public:
        return store.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    return store.private_pem().decode()


UNPUBLISHED = KeyStore.generate()


def forged(kid: str) -> str:
    """A well-formed access token signed by a key nobody publishes, with the given kid."""
    other = UNPUBLISHED
    claims = {"sub": str(uuid.uuid4()), "iss": "mart-user-service", "typ": "access", "role": "admin"}
    claims.update({"jti": uuid.uuid4().hex, "iat": 1, "exp": 2**33})
    return jwt.encode(claims, other.private_key, algorithm="RS256", headers={"kid": kid})


async def test_rotation_publishes_both_keys_then_retires_the_old_one(service_settings, api) -> None:
    old, new = KeyStore.generate(), KeyStore.generate()
    before = service_settings(jwt_private_key_pem=pem(old))
    during = service_settings(jwt_private_key_pem=pem(new), jwt_previous_key_pem=pem(old, public=True))
    after = service_settings(jwt_private_key_pem=pem(new))
    front, clock = SwitchableJwks(), Clock()
    interval, max_age = 30.0, 300.0

    async with serve(front) as url:
        remote = TokenVerifier(
            "mart-user-service",
            jwks_url=f"{url}/.well-known/jwks.json",
            refresh_interval_s=max_age,
            min_fetch_interval_s=interval,
            clock=clock,
        )
        # Before: one key.
        async with run_service(create_app, before, keys=load_or_create_keys(before)) as client:
            front.app = client.app
            await api.register(client, "ned@example.com")
            old_tokens = await api.login(client, "ned@example.com")
            assert (await remote.verify(old_tokens["access_token"]))["typ"] == "access"
            assert front.jwks_fetches == 1

        # During the rotation: new tokens are signed with the new key, the JWKS publishes both.
        async with run_service(create_app, during, keys=load_or_create_keys(during)) as client:
            front.app = client.app
            jwks = (await client.get("/.well-known/jwks.json")).json()
            assert [k["kid"] for k in jwks["keys"]] == [new.kid, old.kid]
            new_tokens = await api.login(client, "ned@example.com")
            assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == new.kid
            # Old and new tokens both work at the user service (access and refresh)...
            for tokens in (old_tokens, new_tokens):
                me = await client.get("/users/me", headers=api.bearer(tokens))
                assert me.status_code == 200, me.text
            refreshed = await client.post(
                "/auth/refresh", json={"refresh_token": old_tokens["refresh_token"]}
            )
            assert refreshed.status_code == 200, refreshed.text
            # ...and at the remote verifier, which learns the new kid with one fetch, once the interval
            # since its last fetch has passed.
            with pytest.raises(InvalidToken):
                await remote.verify(new_tokens["access_token"])  # interval not over: no fetch
            assert front.jwks_fetches == 1
            clock.now += interval
            assert (await remote.verify(new_tokens["access_token"]))["sub"] == old_tokens_sub(old_tokens)
            assert (await remote.verify(old_tokens["access_token"]))["typ"] == "access"
            assert front.jwks_fetches == 2
            # Unknown kids (forged tokens) make at most one fetch per interval.
            for i in range(20):
                with pytest.raises(InvalidToken):
                    await remote.verify(forged(f"made-up-{i}"))
            assert front.jwks_fetches == 2
            clock.now += interval
            for i in range(20):
                with pytest.raises(InvalidToken):
                    await remote.verify(forged(f"again-{i}"))
            assert front.jwks_fetches == 3

        # After: the previous key is retired; its tokens stop verifying.
        async with run_service(create_app, after, keys=load_or_create_keys(after)) as client:
            front.app = client.app
            assert [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]] == [
                new.kid
            ]
            assert (await client.get("/users/me", headers=api.bearer(old_tokens))).status_code == 401
            assert (await client.get("/users/me", headers=api.bearer(new_tokens))).status_code == 200
            # The remote verifier drops the old key when its cached JWKS is older than max_age.
            assert (await remote.verify(old_tokens["access_token"]))["typ"] == "access"  # cache still fresh
            clock.now += max_age
            with pytest.raises(InvalidToken):
                await remote.verify(old_tokens["access_token"])
            assert (await remote.verify(new_tokens["access_token"]))["typ"] == "access"
            assert front.jwks_fetches == 4


def old_tokens_sub(tokens: dict) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]


def test_rotate_and_retire_with_key_files(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MART_DATA_DIR", str(tmp_path))
    settings = UserSettings(data_dir=tmp_path)
    first = load_or_create_keys(settings)
    assert main(["rotate"]) == 0  # python -m user_service.keys rotate
    during = load_or_create_keys(settings)
    assert during.kid != first.kid and during.previous_kid == first.kid
    assert during.kid in capsys.readouterr().out
    assert [k["kid"] for k in during.jwks()["keys"]] == [during.kid, first.kid]
    for name in ("user-service-jwt.pem", "user-service-jwt.previous.pem"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert main(["retire"]) == 0
    after = load_or_create_keys(settings)
    assert after.kid == during.kid and after.previous_kid is None
    assert [k["kid"] for k in after.jwks()["keys"]] == [during.kid]
