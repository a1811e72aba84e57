"""The Stripe webhook: verify the signature over the raw body, apply each Stripe event once.

``POST /webhook`` and the fake provider's ``POST /payments/{id}/simulate`` both call :func:`process_webhook`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import stripe
import structlog
from mart_common.clock import utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.problems import Problem
from sqlalchemy import select

from payment_service.domain import Outcome
from payment_service.handlers import apply_outcome, mark_refunded
from payment_service.models import Payment, WebhookEvent
from payment_service.providers import PaymentProvider

log = structlog.get_logger(__name__)

_OUTCOMES = {
    "payment_intent.succeeded": Outcome.SUCCEEDED,
    "payment_intent.payment_failed": Outcome.FAILED,
    "payment_intent.canceled": Outcome.FAILED,
}


# charge.refunded marks these REFUNDED (a refund we are still retrying may have gone through after all).
_REFUNDABLE = {"SUCCEEDED", "REFUND_PENDING"}


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    event_type: str
    duplicate: bool
    effect: str


def verify(payload: bytes, signature: str | None, secret: str, tolerance_s: int) -> dict[str, Any]:
    """The event if ``signature`` is Stripe's signature of ``payload`` (within tolerance), else a 400."""
    if not signature:
        raise Problem(400, "Missing Stripe-Signature header.", slug="invalid-signature")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance_s)
        event = json.loads(text)
    except stripe.SignatureVerificationError as exc:
        raise Problem(
            400, f"Invalid Stripe signature: {exc.user_message or exc}", slug="invalid-signature"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "The webhook body is not a JSON Stripe event.", slug="invalid-event") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise Problem(400, "The webhook body is not a Stripe event.", slug="invalid-event")
    return event


async def process_webhook(
    db: Database, provider: PaymentProvider, payload: bytes, signature: str | None, *, tolerance_s: int = 300
) -> WebhookResult:
    """Verify, de-duplicate by Stripe event id, and apply, all in one transaction with the effects."""
    event = verify(payload, signature, provider.webhook_secret, tolerance_s)
    event_id, event_type = event["id"], event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    async with db.transaction() as session:
        first = await insert_ignoring_duplicates(
            session,
            WebhookEvent.__table__,  # type: ignore[attr-defined]
            {"event_id": event_id[:255], "type": event_type[:255], "received_at": utcnow()},
        )
        if not first:
            log.info("stripe_event_duplicate", event_id=event_id, type=event_type)
            return WebhookResult(event_id, event_type, True, "duplicate")
        payment = await _find_payment(session, obj)
        if payment is None:
            log.info("stripe_event_unmatched", event_id=event_id, type=event_type)
            return WebhookResult(event_id, event_type, False, "no matching payment")
        if event_type in _OUTCOMES:
            reason = ((obj.get("last_payment_error") or {}).get("message")) or (
                "payment canceled" if event_type == "payment_intent.canceled" else "payment failed"
            )
            decision = await apply_outcome(
                session, provider, payment, _OUTCOMES[event_type], reason=str(reason)
            )
            return WebhookResult(event_id, event_type, False, decision.value)
        if event_type == "charge.refunded" and obj.get("refunded") is True and payment.status in _REFUNDABLE:
            # Fully refunded outside the mart (e.g. from the Stripe dashboard): record it, no provider call.
            await mark_refunded(session, payment)
            return WebhookResult(event_id, event_type, False, "refunded")
        return WebhookResult(event_id, event_type, False, "ignored")


async def _find_payment(session: Any, obj: dict[str, Any]) -> Payment | None:
    """The payment a Stripe object is about, by its PaymentIntent id (locked for the update)."""
    intent_id = obj.get("payment_intent") if obj.get("object") == "charge" else obj.get("id")
    if not isinstance(intent_id, str) or not intent_id:
        return None
    return await session.scalar(
        select(Payment).where(Payment.provider_payment_id == intent_id).with_for_update()
    )
