"""``/payments``: a customer's payments (admins see all); others' payments are invisible (404)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from mart_common.deps import CurrentUser, PageDep, Paginated, RuntimeDep, SessionDep
from mart_common.problems import Conflict, NotFound, problem_responses
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service.domain import PaymentStatus
from payment_service.models import Payment, PaymentPublic, SimulateRequest, SimulationAccepted
from payment_service.providers import FakeProvider
from payment_service.webhook import process_webhook

router = APIRouter(prefix="/payments", tags=["payments"])
simulate_router = APIRouter(prefix="/payments", tags=["payments"])


async def _visible_payment(session: AsyncSession, payment_id: uuid.UUID, user: CurrentUser) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None or (not user.is_admin and payment.user_id != user.user_id):
        raise NotFound("No such payment.")
    return payment


@router.get(
    "",
    response_model=Paginated[PaymentPublic],
    summary="List payments (own; admin: all), optionally of one order.",
    responses=problem_responses(401, 422),
)
async def list_payments(
    session: SessionDep,
    user: CurrentUser,
    page: PageDep,
    order_id: Annotated[uuid.UUID | None, Query(description="Only the payment of this order.")] = None,
) -> dict:
    query = select(Payment)
    if not user.is_admin:
        query = query.where(Payment.user_id == user.user_id)
    if order_id is not None:
        query = query.where(Payment.order_id == order_id)
    return await page.of(
        session,
        query.order_by(Payment.created_at.desc(), Payment.id),
        lambda p: PaymentPublic.model_validate(p, from_attributes=True),
    )


@router.get(
    "/{payment_id}",
    response_model=PaymentPublic,
    summary="One payment (owner or admin).",
    responses=problem_responses(401, 404, 422),
)
async def get_payment(session: SessionDep, user: CurrentUser, payment_id: uuid.UUID) -> Payment:
    return await _visible_payment(session, payment_id, user)


@simulate_router.post(
    "/{payment_id}/simulate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SimulationAccepted,
    summary="Fake provider only: pay or fail a payment as Stripe would report it.",
    description=(
        "Builds a Stripe-format `payment_intent.succeeded` / `payment_intent.payment_failed` event, "
        "signs it with the webhook secret and feeds it through the same code as `POST /webhook`. "
        "Exists only with `MART_PAYMENT_PROVIDER=fake` (404 otherwise); "
        "409 unless the payment is REQUIRES_PAYMENT."
    ),
    responses=problem_responses(401, 404, 409, 422),
)
async def simulate(
    user: CurrentUser, runtime: RuntimeDep, payment_id: uuid.UUID, body: SimulateRequest
) -> SimulationAccepted:
    provider = runtime.extras["payment_provider"]
    if not isinstance(provider, FakeProvider):
        raise NotFound("Simulation exists only with the fake payment provider.")
    # Reads outside the webhook's transaction (no lock held while it runs; on SQLite no write lock).
    async with runtime.db.read() as session:
        payment = await _visible_payment(session, payment_id, user)
    if payment.status != PaymentStatus.REQUIRES_PAYMENT or not payment.provider_payment_id:
        raise Conflict(f"The payment is {payment.status}, not REQUIRES_PAYMENT.", slug="payment-not-pending")
    event_id, payload, signature = provider.build_event(
        outcome=body.outcome,
        provider_payment_id=payment.provider_payment_id,
        payment_id=payment.id,
        order_id=payment.order_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
    )
    result = await process_webhook(
        runtime.db, provider, payload.encode(), signature, tolerance_s=runtime.settings.webhook_tolerance_s
    )
    async with runtime.db.read() as session:
        updated = await session.get(Payment, payment.id)
    return SimulationAccepted(
        event_id=event_id,
        event_type=result.event_type,
        payment=PaymentPublic.model_validate(updated, from_attributes=True),
    )
