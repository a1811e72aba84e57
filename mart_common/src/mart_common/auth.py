"""Access-token verification (RS256) and role checks, as FastAPI dependencies.

Tokens are issued by the user service; every other service verifies them with the public keys from its
JWKS endpoint (or from settings). Only RS256 is accepted, so ``alg=none`` and HS256-with-the-public-key
forgeries fail before any key is used; refresh tokens are refused where an access token is expected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, OAuth2PasswordBearer

from mart_common.problems import Problem

log = structlog.get_logger(__name__)

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "jti", "typ", "role"]

JwksProvider = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the verified claims of an access token."""

    user_id: uuid.UUID
    role: str
    token_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    """The token is not a valid access token of this mart."""


class TokenVerifier:
    """Verifies access tokens against a JWKS (fetched over HTTP, or provided in-process).

    Key rotation (docs/adr/0019-signing-key-rotation.md): the JWKS is cached and re-read when it is older than
    ``refresh_interval_s`` (so a key removed from it stops verifying) or when a token names an unknown
    ``kid`` (a new key) — but never more than once per ``min_fetch_interval_s``, so tokens with made-up
    kids cannot turn requests into JWKS fetches. A failed fetch keeps the keys already known.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        jwks_provider: JwksProvider | None = None,
        public_key_pem: str | None = None,
        refresh_interval_s: float = 300.0,
        min_fetch_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.jwks_provider = jwks_provider
        self.refresh_interval_s = refresh_interval_s
        self.min_fetch_interval_s = min_fetch_interval_s
        self._clock = clock
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._lock = asyncio.Lock()
        self._static_key: Any = None
        if public_key_pem:
            rsa = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
            self._static_key = rsa.prepare_key(public_key_pem)

    async def _load_jwks(self) -> dict[str, Any]:
        if self.jwks_provider is not None:
            return await self.jwks_provider()
        if not self.jwks_url:
            return {"keys": []}
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
            return response.json()

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.refresh_interval_s

    async def _refresh(self, *, only_if_stale: bool) -> None:
        async with self._lock:
            if only_if_stale and not self._stale():
                return  # another request refreshed it while this one waited for the lock
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self.min_fetch_interval_s:
                return  # at most one fetch per interval, whatever asks for it
            self._attempted_at = now
            try:
                data = await self._load_jwks()
            except Exception as exc:
                log.warning("jwks_fetch_failed", url=self.jwks_url, error=str(exc))
                return
            keys: dict[str | None, Any] = {}
            for jwk in data.get("keys", []):
                if jwk.get("kty") != "RSA":
                    continue
                key = jwt.PyJWK.from_dict(jwk, algorithm=ALGORITHM).key
                keys[jwk.get("kid")] = key
            self._keys = keys
            self._fetched_at = self._clock()

    async def _key_for(self, kid: str | None) -> Any:
        if self._static_key is not None:
            return self._static_key
        if self._stale():
            await self._refresh(only_if_stale=True)
        if kid not in self._keys:
            await self._refresh(only_if_stale=False)  # a new key (rotation), or a forged kid
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise InvalidToken("unknown signing key")

    async def verify(self, token: str, *, expected_type: str = "access") -> dict[str, Any]:
        """The token's claims, or :class:`InvalidToken`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        key = await self._key_for(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims.get("typ") != expected_type:
            raise InvalidToken(f"not an {expected_type} token")
        return claims

    async def principal(self, token: str) -> Principal:
        claims = await self.verify(token)
        try:
            return Principal(
                user_id=uuid.UUID(str(claims["sub"])), role=str(claims["role"]), token_id=claims["jti"]
            )
        except (ValueError, KeyError) as exc:
            raise InvalidToken("bad subject") from exc


#: Where Swagger UI's "Authorize" logs in: the user service's OAuth2 password form, through the gateway
#: prefix, so it works on every service's /docs (docs/looking-around.md). Any client may keep sending a
#: plain ``Authorization: Bearer <access token>`` header; this scheme reads exactly that.
LOGIN_URL = "/user-service/auth/login"

_bearer = OAuth2PasswordBearer(
    tokenUrl=LOGIN_URL,
    auto_error=False,
    scheme_name="OAuth2PasswordBearer",
    description="Log in with email (username) and password at `POST /user-service/auth/login`; the access "
    "token is then sent as `Authorization: Bearer <token>`.",
)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def current_principal(
    request: Request, credentials: Annotated[str | HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, from a valid bearer access token; 401 otherwise.

    ``credentials``: the bearer token (the dependency), or the credentials of an ``HTTPBearer`` scheme when
    a route calls this itself.
    """
    if isinstance(credentials, HTTPAuthorizationCredentials):
        credentials = credentials.credentials if credentials.scheme.lower() == "bearer" else None
    if not credentials:
        raise Problem(401, "A bearer access token is required.", headers={"WWW-Authenticate": "Bearer"})
    verifier: TokenVerifier = request.app.state.runtime.token_verifier
    try:
        principal = await verifier.principal(credentials)
    except InvalidToken as exc:
        raise _unauthorized(f"The access token is not valid ({exc}).") from exc
    request.state.principal = principal
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The caller, who must be an admin; 403 otherwise."""
    if not principal.is_admin:
        raise Problem(403, "This operation needs the admin role.")
    return principal


async def optional_principal(request: Request) -> Principal:
    """The caller of a public route with an admin-only option, read by the route itself when the option is
    asked for (401 without a valid token): the anonymous request resolves no dependency for it. Such a route
    declares ``openapi_extra=BEARER_ACCEPTED`` so that its docs and Swagger UI send the token."""
    return await current_principal(request, await _bearer(request))


BEARER_ACCEPTED: dict[str, Any] = {"security": [{_bearer.scheme_name: []}]}
"""``openapi_extra`` of a public route that reads the token itself (``optional_principal``)."""

CurrentUser = Annotated[Principal, Depends(current_principal)]
AdminUser = Annotated[Principal, Depends(require_admin)]
