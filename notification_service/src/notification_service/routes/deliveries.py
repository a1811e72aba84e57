"""Deliveries, for operators: see what failed and why, and send a failed delivery again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from mart_common.clock import utcnow
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep
from mart_common.problems import Problem, problem_responses
from sqlalchemy import select, update

from notification_service.domain import DeliveryStatus
from notification_service.models import Delivery
from notification_service.schemas import DeliveryPublic

router = APIRouter(prefix="/deliveries", tags=["deliveries"])


@router.get(
    "",
    response_model=Paginated[DeliveryPublic],
    summary="Deliveries, newest first (admin); e.g. `?status=FAILED`.",
    responses=problem_responses(401, 403, 422),
)
async def list_deliveries(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
) -> dict:
    conditions = []
    if status is not None:
        conditions.append(Delivery.status == status)
    if user_id is not None:
        conditions.append(Delivery.user_id == user_id)
    query = select(Delivery).where(*conditions).order_by(Delivery.created_at.desc(), Delivery.id.desc())
    return await page.of(session, query, DeliveryPublic.of)


@router.post(
    "/{delivery_id}/retry",
    response_model=DeliveryPublic,
    status_code=202,
    summary="Send a FAILED or SKIPPED delivery again (admin): it gets a fresh set of attempts.",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def retry_delivery(
    delivery_id: uuid.UUID, _admin: AdminUser, session: SessionDep, request: Request
) -> DeliveryPublic:
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]),
        )
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    await session.commit()
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise Problem(404, "No such delivery.")
    if result.rowcount == 0:
        raise Problem(409, f"The delivery is {delivery.status}; only FAILED or SKIPPED ones are retried.")
    request.app.state.runtime.extras["dispatcher"].notify()
    return DeliveryPublic.of(delivery)
