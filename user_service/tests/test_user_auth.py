"""Registration, login, the token lifecycle and throttling, through HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from user_service.keys import KeyStore, load_or_create_keys
from user_service.settings import UserSettings


def _no_secrets(body: object) -> None:
    text = json.dumps(body)
    assert "password" not in text and "$argon2" not in text, text


async def test_register_returns_the_user_without_any_hash(service_client, api) -> None:
    async with service_client() as client:
        response = await client.post(
            "/auth/register",
            json={
                "email": "Ann.Smith@Example.COM",
                "password": "correct-horse",
                "full_name": "Ann",
                "phone": "+1 555 0100",
            },
        )
        assert response.status_code == 201, response.text
        user = response.json()
        _no_secrets(user)
        assert set(user) == {
            "id",
            "email",
            "full_name",
            "phone",
            "role",
            "is_active",
            "created_at",
            "updated_at",
        }
        assert user["email"] == "ann.smith@example.com"
        assert user["role"] == "customer" and user["is_active"] is True
        uuid.UUID(user["id"])

        for email in ("ann.smith@example.com", "ANN.SMITH@EXAMPLE.COM"):
            dup = await client.post(
                "/auth/register", json={"email": email, "password": "another-pass", "full_name": "X"}
            )
            assert dup.status_code == 409, dup.text
            assert dup.headers["content-type"].startswith("application/problem+json")
            assert dup.json()["status"] == 409


async def test_concurrent_registrations_of_one_email_make_one_account(service_client) -> None:
    """The loser of a race past the email check still answers 409 (the unique key, surfaced by the
    use-case before the commit), never a 500."""
    async with service_client() as client:
        body = {"email": "race@example.com", "password": "correct-horse", "full_name": "R"}
        answers = await asyncio.gather(*(client.post("/auth/register", json=body) for _ in range(4)))
        assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
        assert all(r.json()["type"].endswith("email-taken") for r in answers if r.status_code == 409)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "correct-horse", "full_name": "A"},
        {"email": "a@example.com", "password": "short", "full_name": "A"},
        {"email": "a@example.com", "password": "x" * 10_000, "full_name": "A"},
        {"email": "a@example.com", "password": "correct-horse", "full_name": "A" * 10_000},
        {"email": ("a" * 300) + "@example.com", "password": "correct-horse", "full_name": "A"},
        {"email": "a@example.com", "password": "correct-horse", "full_name": "A", "phone": "call me maybe"},
        {"email": "a@example.com", "password": 12345678, "full_name": "A"},
        {"email": ["a@example.com"], "password": "correct-horse", "full_name": "A"},
        {"email": "a@example.com", "password": "correct-horse"},
        {"email": "a@example.com", "password": "correct-horse", "full_name": "A", "role": "admin"},
    ],
)
async def test_register_rejects_bad_input_with_422(service_client, body) -> None:
    async with service_client() as client:
        response = await client.post("/auth/register", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_login_issues_rs256_tokens_with_the_documented_claims(service_client, user_keys, api) -> None:
    async with service_client() as client:
        user = await api.register(client, "bob@example.com")
        response = await client.post(
            "/auth/login", data={"username": "BOB@example.com", "password": "correct-horse"}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 15 * 60

        header = jwt.get_unverified_header(tokens["access_token"])
        assert header["alg"] == "RS256" and header["kid"] == user_keys.kid
        claims = jwt.decode(
            tokens["access_token"], user_keys.public_key, algorithms=["RS256"], issuer="mart-user-service"
        )
        assert claims["sub"] == user["id"] and claims["role"] == "customer" and claims["typ"] == "access"
        assert claims["exp"] - claims["iat"] == 15 * 60 and claims["jti"]
        refresh = jwt.decode(
            tokens["refresh_token"], user_keys.public_key, algorithms=["RS256"], issuer="mart-user-service"
        )
        assert refresh["typ"] == "refresh" and refresh["exp"] - refresh["iat"] == 7 * 24 * 3600

        me = await client.get("/users/me", headers=api.bearer(tokens))
        assert me.status_code == 200 and me.json()["id"] == user["id"]
        _no_secrets(me.json())


async def test_bad_credentials_answer_401(service_client, api) -> None:
    async with service_client() as client:
        await api.register(client, "carol@example.com")
        for username, password in [
            ("carol@example.com", "wrong-password"),
            ("nobody@example.com", "correct-horse"),
            ("", ""),
            ("x" * 5000, "y" * 5000),
        ]:
            response = await client.post("/auth/login", data={"username": username, "password": password})
            assert response.status_code in (401, 422), response.text
            if username:
                assert response.status_code == 401
                assert response.json()["type"].endswith("/invalid-credentials")
        missing = await client.post("/auth/login", data={"username": "carol@example.com"})
        assert missing.status_code == 422


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(service_client, api) -> None:
    async with service_client() as client:
        await api.register(client, "dave@example.com")
        first = await api.login(client, "dave@example.com")
        other_session = await api.login(client, "dave@example.com")

        second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        second = second.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await client.get("/users/me", headers=api.bearer(second))).status_code == 200

        third = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert third.status_code == 200
        third = third.json()

        # Replaying the rotated token: rejected, and the family's newest token dies with it.
        reuse = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        assert reuse.headers["content-type"].startswith("application/problem+json")
        after = await client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]})
        assert after.status_code == 401

        # Another login session is not affected.
        other = await client.post("/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
        assert other.status_code == 200


async def test_logout_ends_the_session(service_client, api) -> None:
    async with service_client() as client:
        await api.register(client, "erin@example.com")
        tokens = await api.login(client, "erin@example.com")
        out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert out.status_code == 204 and out.content == b""
        again = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 204
        refused = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refused.status_code == 401
        forged = await client.post("/auth/logout", json={"refresh_token": "not.a.token"})
        assert forged.status_code == 401


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_invalid_access_tokens_are_rejected_with_401(service_client, user_keys, jwt_keys, api) -> None:
    async with service_client() as client:
        user = await api.register(client, "frank@example.com")
        tokens = await api.login(client, "frank@example.com")
        good = tokens["access_token"]
        claims = jwt.decode(good, options={"verify_signature": False})

        def signed(**changes: object) -> str:
            return user_keys.sign({**claims, **changes})

        head, body, sig = good.split(".")
        tampered_claims = {**claims, "role": "admin"}
        bad_tokens = {
            "expired": signed(exp=claims["iat"] - 60, iat=claims["iat"] - 1000),
            "tampered": f"{head}.{_b64(tampered_claims)}.{sig}",
            "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(tampered_claims)}.",
            "hs256_with_public_key": jwt.encode(
                claims,
                "secret-not-the-key-but-long-enough-for-hs256!",
                algorithm="HS256",
                headers={"kid": user_keys.kid},
            ),
            "wrong_issuer": signed(iss="someone-else"),
            "refresh_as_access": tokens["refresh_token"],
            "other_key": jwt_keys.token(user["id"], "admin"),
            "missing_claim": user_keys.sign({k: v for k, v in claims.items() if k != "jti"}),
            "garbage": "garbage",
        }
        for name, token in bad_tokens.items():
            response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (name, response.text)
            assert response.headers["content-type"].startswith("application/problem+json"), name
        assert (await client.get("/users/me")).status_code == 401
        assert (await client.get("/users/me", headers={"Authorization": f"Basic {good}"})).status_code == 401
        # An access token is not a refresh token either.
        assert (await client.post("/auth/refresh", json={"refresh_token": good})).status_code == 401
        assert (await client.get("/users/me", headers={"Authorization": f"Bearer {good}"})).status_code == 200


async def test_expired_refresh_token_is_rejected(service_client, api) -> None:
    async with service_client(refresh_token_ttl_s=60) as client:
        await api.register(client, "gina@example.com")
        tokens = await api.login(client, "gina@example.com")
        keys = client.runtime.context.keys
        claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
        expired = keys.sign({**claims, "exp": claims["iat"] - 10, "iat": claims["iat"] - 100})
        response = await client.post("/auth/refresh", json={"refresh_token": expired})
        assert response.status_code == 401


async def test_repeated_failures_are_throttled_with_429(service_client, api) -> None:
    async with service_client(login_max_failures_per_account=3, login_max_failures_per_client=8) as client:
        await api.register(client, "hank@example.com")
        await api.register(client, "ivy@example.com")
        # Success resets the account's count.
        for _ in range(2):
            bad = await client.post(
                "/auth/login", data={"username": "hank@example.com", "password": "wrong-pass"}
            )
            assert bad.status_code == 401
        await api.login(client, "hank@example.com")
        for _ in range(3):
            bad = await client.post(
                "/auth/login", data={"username": "HANK@example.com", "password": "wrong-pass"}
            )
            assert bad.status_code == 401
        blocked = await client.post(
            "/auth/login", data={"username": "hank@example.com", "password": "correct-horse"}
        )
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["Retry-After"]) >= 1
        assert blocked.headers["content-type"].startswith("application/problem+json")
        # Another account from the same client still works until the client's own limit.
        await api.login(client, "ivy@example.com")
        for _ in range(5):
            await client.post("/auth/login", data={"username": f"x{_}@example.com", "password": "wrong-pass"})
        client_blocked = await client.post(
            "/auth/login", data={"username": "ivy@example.com", "password": "correct-horse"}
        )
        assert client_blocked.status_code == 429


async def test_jwks_publishes_the_signing_key(service_client, user_keys, api) -> None:
    async with service_client() as client:
        await api.register(client, "jack@example.com")
        tokens = await api.login(client, "jack@example.com")
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["kid"] for k in jwks["keys"]] == [user_keys.kid]
        key = jwks["keys"][0]
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and "d" not in key
        public = jwt.PyJWK.from_dict(key, algorithm="RS256").key
        claims = jwt.decode(tokens["access_token"], public, algorithms=["RS256"], issuer="mart-user-service")
        assert claims["typ"] == "access"


def test_keys_are_generated_once_and_kept(tmp_path) -> None:
    settings = UserSettings(data_dir=tmp_path)
    first = load_or_create_keys(settings)
    path = tmp_path / "keys" / "user-service-jwt.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keys(settings).kid == first.kid
    # RFC 7638 thumbprint: 43 base64url characters of SHA-256.
    assert len(first.kid) == 43
    from_settings = load_or_create_keys(
        UserSettings(
            data_dir=tmp_path / "other", jwt_private_key_pem=first.private_pem().decode().replace("\n", "\\n")
        )
    )
    assert from_settings.kid == first.kid
    assert not (tmp_path / "other" / "keys").exists()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        KeyStore.from_pem(pem)


async def test_admin_is_created_from_settings(service_client, api) -> None:
    email, password = api.admin
    async with service_client() as client:
        tokens = await api.login(client, email, password)
        me = (await client.get("/users/me", headers=api.bearer(tokens))).json()
        assert me["role"] == "admin" and me["email"] == email
    # A restart does not create a second one nor change the password.
    async with service_client(admin_password="something-else") as client:
        await api.login(client, email, password)


def _logged_password(line: str) -> str:
    # Logging is configured once per process: JSON lines or the console renderer (with colours).
    import re

    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if line.lstrip().startswith("{"):
        return json.loads(line)["password"]
    return re.search(r"password=(\S+)", line).group(1).strip("'\"")


async def test_admin_without_password_gets_a_generated_one_logged_once(service_client, api, capsys) -> None:
    async with service_client(admin_password=None, admin_email="boss@example.com", log_json=True) as client:
        await api.register(client, "someone@example.com")
        await api.login(client, "someone@example.com")
        out = capsys.readouterr()
        text = out.out + out.err
        lines = [line for line in text.splitlines() if "admin_account_created_with_generated" in line]
        assert len(lines) == 1, text
        await api.login(client, "boss@example.com", _logged_password(lines[0]))
        assert "correct-horse" not in text  # other passwords never reach the logs
    async with service_client(admin_password=None, admin_email="boss@example.com", log_json=True):
        out = capsys.readouterr()
        assert "generated_password" not in out.out + out.err


def test_access_token_lifetime_is_a_setting() -> None:
    assert UserSettings().access_token_ttl_s == int(timedelta(minutes=15).total_seconds())
    assert UserSettings().refresh_token_ttl_s == int(timedelta(days=7).total_seconds())


async def test_weird_input_never_yields_500(service_client, api) -> None:
    async with service_client() as client:
        admin = api.bearer(await api.login(client, *api.admin))
        requests = [
            (
                "post",
                "/auth/register",
                {"json": {"email": "nul@example.com", "password": "correct-horse", "full_name": "a\x00b"}},
            ),
            (
                "post",
                "/auth/register",
                {"json": {"email": "n\x00ul@example.com", "password": "correct-horse", "full_name": "a"}},
            ),
            (
                "post",
                "/auth/register",
                {"content": b"\xff\xfe not json", "headers": {"content-type": "application/json"}},
            ),
            (
                "post",
                "/auth/register",
                {"json": {"email": "big@example.com", "password": "p" * 20, "full_name": "é" * 400_000}},
            ),
            ("post", "/auth/login", {"data": {"username": "a\x00@example.com", "password": "x\x00y"}}),
            ("post", "/auth/login", {"json": {"username": "a@example.com", "password": "x"}}),
            ("post", "/auth/refresh", {"json": {"refresh_token": "\x00"}}),
            ("post", "/auth/refresh", {"json": {"refresh_token": "a.b.c" * 2000}}),
            ("post", "/auth/refresh", {"json": {"refresh_token": None}}),
            ("get", "/users", {"params": {"q": "\x00"}, "headers": admin}),
            ("get", "/users", {"params": {"q": "🙂' OR 1=1 --"}, "headers": admin}),
            ("patch", "/users/me", {"json": {"full_name": "x\x00"}, "headers": admin}),
            ("patch", "/users/me", {"json": [1, 2], "headers": admin}),
            ("get", "/users/%00", {"headers": admin}),
        ]
        for method, url, kwargs in requests:
            response = await client.request(method, url, **kwargs)
            assert response.status_code < 500, (method, url, response.status_code, response.text)
            assert response.status_code in (200, 400, 401, 404, 413, 422), (method, url, response.status_code)
