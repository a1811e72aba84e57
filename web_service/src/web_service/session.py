"""The browser's side of the web front: one signed, httpOnly, SameSite=Lax session cookie holding the
sign-in (the user service's access and refresh tokens), the cart, a CSRF token and flash messages.

Page scripts can never read the tokens (httpOnly); they never appear in a page or a URL. An access token
about to expire is refreshed with the refresh token before the request uses it; a refresh token is used
once (the user service rotates it and revokes the whole login when a used one comes back), so concurrent
requests of one browser share one refresh (:class:`Refresher`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import itsdangerous
import jwt
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: At most this many different products in a cart (the cookie stays well under the browsers' 4 KB).
CART_MAX_LINES = 20
#: Most of one product in a cart (the order service's limit per line).
CART_MAX_QUANTITY = 100
#: Refresh an access token that expires within this many seconds.
REFRESH_MARGIN_S = 30
#: A refresh's result is reused this long by requests that arrive with the same, now rotated, token.
REFRESH_REUSE_S = 60


def claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified: the web front only reads its own session (signed), and every service
    verifies the token itself when it is used."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


Refresh = Callable[[str], Awaitable[TokenPair | None]]


class Refresher:
    """One refresh per refresh token in this process, its result shared with concurrent and slightly later
    requests that still carry the old token (their cookie was read before the new one was set)."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[float, asyncio.Future[TokenPair | None]]] = {}

    async def refresh(self, refresh_token: str, do: Refresh) -> TokenPair | None:
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        now = time.monotonic()
        for k in [k for k, (at, _) in self._done.items() if now - at > REFRESH_REUSE_S]:
            del self._done[k]
        if key in self._done:
            return await asyncio.shield(self._done[key][1])
        future: asyncio.Future[TokenPair | None] = asyncio.get_running_loop().create_future()
        self._done[key] = (now, future)
        try:
            result = await do(refresh_token)
        except BaseException as exc:
            del self._done[key]  # a failure to reach the service is not remembered
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        future.set_result(result)
        return result


class Visitor:
    """The session of the browser behind one request (Starlette's ``request.session``)."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session

    # --- sign-in -------------------------------------------------------------------------------

    @property
    def user(self) -> dict[str, Any] | None:
        auth = self.session.get("auth")
        return auth.get("user") if auth else None

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    @property
    def is_admin(self) -> bool:
        return bool(self.user) and self.user.get("role") == "admin"  # type: ignore[union-attr]

    def tokens(self) -> TokenPair | None:
        auth = self.session.get("auth")
        return TokenPair(auth["access"], auth["refresh"]) if auth else None

    def sign_in(self, pair: TokenPair, *, email: str, name: str) -> None:
        c = claims(pair.access)
        self.session["auth"] = {
            "access": pair.access,
            "refresh": pair.refresh,
            "user": {"id": c.get("sub"), "role": c.get("role"), "email": email, "name": name[:60]},
        }
        self.session["csrf"] = secrets.token_urlsafe(24)  # a new sign-in, a new CSRF token

    def store_tokens(self, pair: TokenPair) -> None:
        auth = self.session.get("auth")
        if auth is None:
            return
        c = claims(pair.access)
        self.session["auth"] = {
            **auth,
            "access": pair.access,
            "refresh": pair.refresh,
            "user": {**auth["user"], "role": c.get("role", auth["user"].get("role"))},
        }

    def rename(self, name: str) -> None:
        auth = self.session.get("auth")
        if auth is not None:
            self.session["auth"] = {**auth, "user": {**auth["user"], "name": name[:60]}}

    def sign_out(self) -> None:
        self.session.pop("auth", None)
        self.session["csrf"] = secrets.token_urlsafe(24)

    def access_expires_in(self) -> float:
        pair = self.tokens()
        if pair is None:
            return 0.0
        return float(claims(pair.access).get("exp", 0)) - time.time()

    # --- CSRF ----------------------------------------------------------------------------------

    @property
    def csrf_token(self) -> str:
        token = self.session.get("csrf")
        if not token:
            token = self.session["csrf"] = secrets.token_urlsafe(24)
        return token

    def csrf_ok(self, submitted: str | None) -> bool:
        expected = self.session.get("csrf")
        return bool(expected and submitted) and hmac.compare_digest(str(expected), str(submitted))

    # --- cart ----------------------------------------------------------------------------------

    @property
    def cart(self) -> dict[str, int]:
        return dict(self.session.get("cart") or {})

    def cart_count(self) -> int:
        return sum(self.cart.values())

    def set_cart_line(self, product_id: str, quantity: int) -> bool:
        """Set one line (0 removes it); False when the cart is full."""
        cart = self.cart
        if quantity <= 0:
            cart.pop(product_id, None)
        else:
            if product_id not in cart and len(cart) >= CART_MAX_LINES:
                return False
            cart[product_id] = min(quantity, CART_MAX_QUANTITY)
        self.session["cart"] = cart
        return True

    def clear_cart(self) -> None:
        self.session.pop("cart", None)

    def remember_order(self, idempotency_key: str, order_id: str) -> None:
        """The orders placed last, by their checkout form's key (a resubmitted form finds its order)."""
        placed = [p for p in self.session.get("placed") or [] if p[0] != idempotency_key]
        self.session["placed"] = [*placed, [idempotency_key, order_id]][-2:]

    def placed_order(self, idempotency_key: str) -> str | None:
        return next((o for k, o in self.session.get("placed") or [] if k == idempotency_key), None)

    # --- flash messages ------------------------------------------------------------------------

    def flash(self, message: str, kind: str = "info") -> None:
        self.session["flash"] = [*(self.session.get("flash") or []), [kind, message[:300]]][-3:]

    def pop_flashes(self) -> list[tuple[str, str]]:
        return [(k, m) for k, m in self.session.pop("flash", None) or []]


class SessionCookieMiddleware:
    """``request.session`` from signed cookies (itsdangerous, as Starlette's ``SessionMiddleware``): **one
    cookie per key** (``mart_auth``, ``mart_csrf``, ``mart_cart``, ``mart_flash`` ...), each written back only
    when the request changed that key.

    Starlette's middleware keeps the whole session in one cookie and writes it on every answer. With the
    state in the browser that loses changes: a page requested with an older cookie (a stylesheet, an event
    stream, a page that shows a flash message) and answered after the checkout that emptied the cart would
    put the cart back. Per key and only on change, an answer can only write what it changed itself.
    """

    def __init__(
        self, app: ASGIApp, *, secret_key: str, prefix: str, max_age: int, same_site: str, secure: bool
    ) -> None:
        self.app = app
        self.signer = itsdangerous.TimestampSigner(secret_key)
        self.prefix = prefix
        self.max_age = max_age
        self.flags = f"Path=/; HttpOnly; SameSite={same_site}" + ("; Secure" if secure else "")

    def _load(self, scope: Scope) -> dict[str, Any]:
        session: dict[str, Any] = {}
        for name, raw in HTTPConnection(scope).cookies.items():
            if not name.startswith(self.prefix) or not raw:
                continue
            try:
                session[name.removeprefix(self.prefix)] = json.loads(
                    b64decode(self.signer.unsign(raw.encode(), max_age=self.max_age))
                )
            except (itsdangerous.BadSignature, ValueError):
                continue  # tampered with or expired: as if absent
        return session

    def _cookie(self, key: str, value: Any) -> str:
        if value is None:
            return f"{self.prefix}{key}=; Max-Age=0; {self.flags}"
        signed = self.signer.sign(b64encode(json.dumps(value).encode())).decode()
        return f"{self.prefix}{key}={signed}; Max-Age={self.max_age}; {self.flags}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = self._load(scope)
        before = {k: json.dumps(v, sort_keys=True) for k, v in session.items()}
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                now: dict[str, Any] = scope["session"]
                headers = MutableHeaders(scope=message)
                for key in sorted(set(before) | set(now)):
                    value = now.get(key)
                    if (json.dumps(value, sort_keys=True) if key in now else None) != before.get(key):
                        headers.append("set-cookie", self._cookie(key, value if key in now else None))
            await send(message)

        await self.app(scope, receive, send_wrapper)
