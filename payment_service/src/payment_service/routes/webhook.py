"""``POST /webhook``: Stripe's events (``stripe listen --forward-to localhost:8011/webhook``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from mart_common.deps import TransactionDep
from mart_common.problems import problem_responses

from payment_service import services
from payment_service.context import PaymentContextDep
from payment_service.schemas import WebhookAck

router = APIRouter(tags=["webhook"])


@router.post(
    "/webhook",
    response_model=WebhookAck,
    summary="Stripe webhook: the raw body signed in Stripe-Signature; each Stripe event applied once.",
    responses=problem_responses(400),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def stripe_webhook(
    request: Request,
    tx: TransactionDep,
    ctx: PaymentContextDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    payload = await request.body()  # the raw bytes: the signature covers them exactly
    result = await services.receive_webhook(
        tx, ctx.provider, payload, stripe_signature, tolerance_s=ctx.settings.webhook_tolerance_s
    )
    return WebhookAck(event_id=result.event_id, duplicate=result.duplicate)
