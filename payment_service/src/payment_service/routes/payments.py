"""``/payments``: a customer's payments (admins see all); others' payments are invisible (404)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from mart_common.deps import CurrentUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from payment_service import services
from payment_service.context import PaymentContextDep
from payment_service.models import Payment
from payment_service.schemas import PaymentPublic, SimulateRequest, SimulationAccepted

router = APIRouter(prefix="/payments", tags=["payments"])
simulate_router = APIRouter(prefix="/payments", tags=["payments"])


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
    payments, total = await services.list_payments(session, user, page, order_id=order_id)
    return page.wrap([PaymentPublic.model_validate(p, from_attributes=True) for p in payments], total)


@router.get(
    "/{payment_id}",
    response_model=PaymentPublic,
    summary="One payment (owner or admin).",
    responses=problem_responses(401, 404, 422),
)
async def get_payment(session: SessionDep, user: CurrentUser, payment_id: uuid.UUID) -> Payment:
    return await services.get_payment(session, user, payment_id)


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
    user: CurrentUser,
    tx: TransactionDep,
    ctx: PaymentContextDep,
    payment_id: uuid.UUID,
    body: SimulateRequest,
) -> SimulationAccepted:
    done = await services.simulate_payment(tx, ctx, user, payment_id, body.outcome)
    return SimulationAccepted(
        event_id=done.event_id,
        event_type=done.event_type,
        payment=PaymentPublic.model_validate(done.payment, from_attributes=True),
    )
