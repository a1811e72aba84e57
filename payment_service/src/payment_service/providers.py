"""Payment provider adapters behind one interface: ``stripe`` (the official SDK) and ``fake`` (the default),
and the check of their webhook signatures.

The Stripe SDK is blocking: every call runs in ``asyncio.to_thread``, never on the event loop, and carries
an idempotency key (``order-<order_id>`` for the intent, ``refund-<payment_id>`` for a refund), so a
retried call never creates a second intent or a second refund. Failures of ``create_intent`` and ``refund``
surface as :class:`ProviderError`, transient (retry later) or not
(see docs/adr/0015-payment-provider-calls-after-commit.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import stripe
import structlog

from payment_service.settings import PaymentSettings

log = structlog.get_logger(__name__)


class ProviderError(Exception):
    """A provider call that did not go through. ``transient``: the same call may succeed later (network
    error, timeout, 5xx, rate limit); otherwise the provider refused it (card declined, invalid request).
    ``code`` is the provider's error code when it gave one (``card_declined``, ``charge_already_refunded``).
    """

    def __init__(self, message: str, *, transient: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.code = code


def stripe_error(exc: stripe.StripeError) -> ProviderError:
    """A Stripe SDK error as a :class:`ProviderError` with a reason a customer or an operator can read."""
    code = getattr(exc, "code", None)
    detail = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        return ProviderError(f"card declined: {detail}", transient=False, code=code or "card_declined")
    if isinstance(exc, stripe.APIConnectionError):
        # The SDK wraps the cause in a long "Unexpected error communicating with Stripe…": keep the cause.
        text = str(exc)
        cause = text.split("Network error: ", 1)[1].removesuffix(")") if "Network error: " in text else detail
        detail = " ".join(cause.split())[:300]
        return ProviderError(f"payment provider unreachable: {detail}", transient=True, code=code)
    if isinstance(exc, stripe.RateLimitError) or (exc.http_status or 0) >= 500 or exc.http_status is None:
        return ProviderError(f"payment provider error: {detail}", transient=True, code=code)
    return ProviderError(f"payment refused by the provider: {detail}", transient=False, code=code)


@dataclass(frozen=True)
class Intent:
    provider_payment_id: str
    client_secret: str | None = None
    checkout_url: str | None = None


class PaymentProvider(ABC):
    """What the payment service asks of a payment provider."""

    name: str
    webhook_secret: str

    @abstractmethod
    async def create_intent(
        self,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_cents: int,
        currency: str,
    ) -> Intent: ...

    @abstractmethod
    async def cancel_intent(self, provider_payment_id: str, *, payment_id: uuid.UUID) -> None: ...

    @abstractmethod
    async def refund(self, provider_payment_id: str, *, payment_id: uuid.UUID, order_id: uuid.UUID) -> str:
        """Refund the whole charge; returns the provider's refund id."""

    def verify_event(self, payload: bytes, signature: str | None, tolerance_s: int) -> dict[str, Any]:
        """The Stripe event in ``payload`` if ``signature`` is the provider's signature of it (both
        providers sign as Stripe does), else :class:`InvalidWebhook`."""
        return verify_event(payload, signature, self.webhook_secret, tolerance_s)


class InvalidWebhook(Exception):
    """A webhook body that is not a Stripe event signed with our secret (``slug``: the problem type)."""

    def __init__(self, detail: str, *, slug: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug


def verify_event(payload: bytes, signature: str | None, secret: str, tolerance_s: int) -> dict[str, Any]:
    """The event if ``signature`` is Stripe's signature of ``payload`` (within tolerance)."""
    if not signature:
        raise InvalidWebhook("Missing Stripe-Signature header.", slug="invalid-signature")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance_s)
        event = json.loads(text)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(
            f"Invalid Stripe signature: {exc.user_message or exc}", slug="invalid-signature"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidWebhook("The webhook body is not a JSON Stripe event.", slug="invalid-event") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise InvalidWebhook("The webhook body is not a Stripe event.", slug="invalid-event")
    return event


def intent_id_of(obj: dict[str, Any]) -> str | None:
    """The PaymentIntent id a Stripe event's object is about (a charge names its intent)."""
    intent_id = obj.get("payment_intent") if obj.get("object") == "charge" else obj.get("id")
    return intent_id if isinstance(intent_id, str) and intent_id else None


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, computed exactly as Stripe does."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class FakeProvider(PaymentProvider):
    """No network: intents are ``pi_fake_<hex>``; outcomes come from ``POST /payments/{id}/simulate``,
    which builds a Stripe-format event signed with the webhook secret."""

    name = "fake"

    def __init__(self, webhook_secret: str) -> None:
        self.webhook_secret = webhook_secret

    async def create_intent(
        self,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_cents: int,
        currency: str,
    ) -> Intent:
        pi = f"pi_fake_{payment_id.hex}"  # derived from the payment: idempotent like Stripe's key
        return Intent(provider_payment_id=pi, client_secret=f"{pi}_secret_{secrets.token_hex(12)}")

    async def cancel_intent(self, provider_payment_id: str, *, payment_id: uuid.UUID) -> None:
        return None

    async def refund(self, provider_payment_id: str, *, payment_id: uuid.UUID, order_id: uuid.UUID) -> str:
        return f"re_fake_{payment_id.hex}"

    def build_event(
        self,
        *,
        outcome: str,
        provider_payment_id: str,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        amount_cents: int,
        currency: str,
    ) -> tuple[str, str, str]:
        """A signed ``payment_intent.succeeded``/``payment_intent.payment_failed`` event:
        ``(event_id, payload, Stripe-Signature header)``."""
        event_id = f"evt_fake_{secrets.token_hex(12)}"
        now = int(time.time())
        intent: dict[str, Any] = {
            "id": provider_payment_id,
            "object": "payment_intent",
            "amount": amount_cents,
            "currency": currency.lower(),
            "metadata": {"order_id": str(order_id), "payment_id": str(payment_id)},
            "status": "succeeded" if outcome == "succeeded" else "requires_payment_method",
        }
        if outcome != "succeeded":
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
        event = {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "type": "payment_intent.succeeded" if outcome == "succeeded" else "payment_intent.payment_failed",
            "created": now,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": intent},
        }
        payload = json.dumps(event, separators=(",", ":"))
        return event_id, payload, sign_payload(payload, self.webhook_secret, now)


class StripeProvider(PaymentProvider):
    """Stripe PaymentIntents and Refunds through ``stripe.StripeClient`` (blocking SDK, off the loop)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        *,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 2,
        api_base: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            api_key,
            http_client=http_client or stripe.new_default_http_client(timeout=timeout_s),
            max_network_retries=max_network_retries,
            base_addresses={"api": api_base} if api_base else None,
        )

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except stripe.StripeError as exc:
            raise stripe_error(exc) from exc

    async def create_intent(
        self,
        *,
        payment_id: uuid.UUID,
        order_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_cents: int,
        currency: str,
    ) -> Intent:
        intent = await self._call(
            self.client.v1.payment_intents.create,
            {
                "amount": amount_cents,
                "currency": currency.lower(),
                "automatic_payment_methods": {"enabled": True},
                "metadata": {
                    "order_id": str(order_id),
                    "payment_id": str(payment_id),
                    "user_id": str(user_id),
                },
            },
            {"idempotency_key": f"order-{order_id}"},
        )
        return Intent(provider_payment_id=intent.id, client_secret=intent.client_secret)

    async def cancel_intent(self, provider_payment_id: str, *, payment_id: uuid.UUID) -> None:
        try:
            await asyncio.to_thread(
                self.client.v1.payment_intents.cancel,
                provider_payment_id,
                {"cancellation_reason": "abandoned"},
                {"idempotency_key": f"cancel-{payment_id}"},
            )
        except stripe.StripeError as exc:
            # Best effort: an intent that cannot be cancelled any more (it just succeeded) is refunded when
            # its ``payment_intent.succeeded`` arrives; see domain.decide.
            log.warning("stripe_cancel_failed", payment_id=str(payment_id), error=str(exc))

    async def refund(self, provider_payment_id: str, *, payment_id: uuid.UUID, order_id: uuid.UUID) -> str:
        refund = await self._call(
            self.client.v1.refunds.create,
            {
                "payment_intent": provider_payment_id,
                "metadata": {"order_id": str(order_id), "payment_id": str(payment_id)},
            },
            {"idempotency_key": f"refund-{payment_id}"},
        )
        return refund.id


def build_provider(settings: PaymentSettings) -> PaymentProvider:
    """The provider the settings choose (``MART_PAYMENT_PROVIDER``)."""
    secret = settings.resolved_webhook_secret()
    if settings.payment_provider == "stripe":
        if settings.stripe_api_key is None or not settings.stripe_api_key.get_secret_value():
            raise ValueError("STRIPE_API_KEY is required with MART_PAYMENT_PROVIDER=stripe")
        return StripeProvider(
            settings.stripe_api_key.get_secret_value(),
            secret,
            max_network_retries=settings.stripe_max_network_retries,
            api_base=settings.stripe_api_base,
            timeout_s=settings.stripe_timeout_s,
        )
    return FakeProvider(secret)
