"""The caller's channel preferences: email and SMS on or off (in-app notifications are always kept)."""

from __future__ import annotations

from fastapi import APIRouter
from mart_common.clock import utcnow
from mart_common.db import upsert
from mart_common.deps import CurrentUser, SessionDep
from mart_common.problems import problem_responses

from notification_service.deliveries import preferences_of
from notification_service.models import Preference
from notification_service.schemas import PreferencesPublic, PreferencesUpdate

router = APIRouter(prefix="/preferences", tags=["preferences"])


@router.get(
    "",
    response_model=PreferencesPublic,
    summary="Your channel preferences.",
    responses=problem_responses(401),
)
async def get_preferences(user: CurrentUser, session: SessionDep) -> PreferencesPublic:
    prefs = await preferences_of(session, user.user_id)
    return PreferencesPublic(email=prefs.email, sms=prefs.sms)


@router.put(
    "",
    response_model=PreferencesPublic,
    summary="Choose whether notifications also reach you by email and by SMS.",
    responses=problem_responses(401, 422),
)
async def put_preferences(
    body: PreferencesUpdate, user: CurrentUser, session: SessionDep
) -> PreferencesPublic:
    await upsert(
        session,
        Preference.__table__,
        {"user_id": user.user_id, "email": body.email, "sms": body.sms, "updated_at": utcnow()},
        keys=["user_id"],
    )
    await session.commit()
    return PreferencesPublic(email=body.email, sms=body.sms)
