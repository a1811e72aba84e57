"""The caller's in-app notifications."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from mart_common.deps import CurrentUser, PageDep, Paginated, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from notification_service import services
from notification_service.schemas import NotificationPublic

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get(
    "",
    response_model=Paginated[NotificationPublic],
    summary="Your notifications, newest first.",
    responses=problem_responses(401, 422),
)
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    unread: Annotated[bool | None, Query(description="true: only unread; false: only read.")] = None,
) -> dict[str, Any]:
    rows, total = await services.list_notifications(session, page, user_id=user.user_id, unread=unread)
    return page.wrap([NotificationPublic.of(n) for n in rows], total)


@router.post(
    "/{notification_id}/read",
    response_model=NotificationPublic,
    summary="Mark one of your notifications as read.",
    responses=problem_responses(401, 404, 422),
)
async def mark_read(notification_id: uuid.UUID, user: CurrentUser, tx: TransactionDep) -> NotificationPublic:
    notification = await services.mark_read(tx, user_id=user.user_id, notification_id=notification_id)
    return NotificationPublic.of(notification)
