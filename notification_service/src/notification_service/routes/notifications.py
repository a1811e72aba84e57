"""The caller's in-app notifications."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from mart_common.clock import utcnow
from mart_common.deps import CurrentUser, PageDep, Paginated, SessionDep
from mart_common.problems import Problem, problem_responses
from sqlalchemy import select

from notification_service.models import Notification
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
) -> dict:
    conditions = [Notification.user_id == user.user_id]
    if unread is True:
        conditions.append(Notification.read_at.is_(None))
    elif unread is False:
        conditions.append(Notification.read_at.is_not(None))
    query = (
        select(Notification)
        .where(*conditions)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
    )
    return await page.of(session, query, NotificationPublic.of)


@router.post(
    "/{notification_id}/read",
    response_model=NotificationPublic,
    summary="Mark one of your notifications as read.",
    responses=problem_responses(401, 404, 422),
)
async def mark_read(notification_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> NotificationPublic:
    notification = await session.get(Notification, notification_id)
    if notification is None or notification.user_id != user.user_id:
        raise Problem(404, "No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
        await session.commit()
    return NotificationPublic.of(notification)
