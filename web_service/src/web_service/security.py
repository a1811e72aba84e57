"""Security headers on every answer of the web front: a Content-Security-Policy without inline script
(pages load only this site's script; Stripe's when its Payment Element is configured), no framing,
``nosniff`` and a referrer policy that keeps paths (order ids) on this site."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_service.settings import WebSettings

STRIPE_JS = "https://js.stripe.com"


def content_security_policy(settings: WebSettings) -> str:
    stripe = bool(settings.stripe_publishable_key)
    script = "'self'" + (f" {STRIPE_JS}" if stripe else "")
    connect = "'self'" + (" https://api.stripe.com" if stripe else "")
    frame = f"{STRIPE_JS} https://hooks.stripe.com" if stripe else "'none'"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script}",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            f"frame-src {frame}",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    """A pure ASGI layer adding the headers to every response (pages, static files, event streams)."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(settings).encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers") or [] if k.lower() not in self.names]
                message["headers"] = [*kept, *self.headers]
            await send(message)

        await self.app(scope, receive, _send)
