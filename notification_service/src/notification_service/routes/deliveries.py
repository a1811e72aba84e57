"""Deliveries, for operators: see what failed and why, and send a failed delivery again."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from mart_common.deps import AdminUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from notification_service import services
from notification_service.domain import DeliveryStatus
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
) -> dict[str, Any]:
    rows, total = await services.list_deliveries(session, page, status=status, user_id=user_id)
    return page.wrap([DeliveryPublic.of(d) for d in rows], total)


@router.post(
    "/{delivery_id}/retry",
    response_model=DeliveryPublic,
    status_code=202,
    summary="Send a FAILED or SKIPPED delivery again (admin): it gets a fresh set of attempts.",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def retry_delivery(delivery_id: uuid.UUID, _admin: AdminUser, tx: TransactionDep) -> DeliveryPublic:
    return DeliveryPublic.of(await services.retry_delivery(tx, delivery_id))
