"""Stripe's Payment Element (docs/web.md, "Paying"): with a publishable key, the order page mounts it and the
Content-Security-Policy admits Stripe.js (and only then); the payment's client secret never appears in the
page (the page's script fetches it from /orders/{id}/payment-intent)."""

from __future__ import annotations

import uuid

from web_service.pages import Pages
from web_service.routes.orders import CANCELLABLE
from web_service.security import content_security_policy
from web_service.settings import WebSettings

SECRET = "pi_3Example_secret_DoNotRender"


def _status_block(settings: WebSettings, provider: str) -> str:
    order_id = str(uuid.uuid4())
    order = {
        "id": order_id,
        "status": "AWAITING_PAYMENT",
        "history": [{"status": "PENDING", "at": "2026-01-01T00:00:00Z", "reason": "order placed"}],
        "items": [],
    }
    payment = {
        "id": str(uuid.uuid4()),
        "provider": provider,
        "status": "REQUIRES_PAYMENT",
        "amount_cents": 1200,
        "currency": "EUR",
        "client_secret": SECRET,
    }
    return Pages(settings).fragment(
        "orders/_status.html",
        order=order,
        names={},
        payment=payment,
        payment_error=None,
        stripe_ready=provider == "stripe" and bool(settings.stripe_publishable_key),
        cancellable=order["status"] in CANCELLABLE,
        csrf_token="t",
        settings=settings,
    )


def test_with_a_publishable_key_the_order_page_mounts_stripes_payment_element() -> None:
    settings = WebSettings(stripe_publishable_key="pk_test_123")
    html = _status_block(settings, "stripe")
    assert 'data-stripe="/orders/' in html and 'id="payment-element"' in html
    assert SECRET not in html and "pk_test_123" not in html  # both fetched by the page's script
    assert "Decline</button>" not in html
    csp = content_security_policy(settings)
    assert "script-src 'self' https://js.stripe.com" in csp
    assert "frame-src https://js.stripe.com https://hooks.stripe.com" in csp
    assert "connect-src 'self' https://api.stripe.com" in csp


def test_without_a_key_no_stripe_script_is_admitted() -> None:
    settings = WebSettings(stripe_publishable_key=None)
    html = _status_block(settings, "stripe")
    assert "data-stripe" not in html and "Payment is taken by Stripe" in html
    csp = content_security_policy(settings)
    assert "stripe" not in csp and "frame-src 'none'" in csp
    fake = _status_block(settings, "fake")
    assert "Decline</button>" in fake and SECRET not in fake
