"""The caller's channel preferences: email and SMS on or off (in-app notifications are always kept)."""

from __future__ import annotations

from fastapi import APIRouter
from mart_common.deps import CurrentUser, SessionDep, TransactionDep
from mart_common.problems import problem_responses

from notification_service import services
from notification_service.domain import Preferences
from notification_service.schemas import PreferencesPublic, PreferencesUpdate

router = APIRouter(prefix="/preferences", tags=["preferences"])


@router.get(
    "",
    response_model=PreferencesPublic,
    summary="Your channel preferences.",
    responses=problem_responses(401),
)
async def get_preferences(user: CurrentUser, session: SessionDep) -> PreferencesPublic:
    prefs = await services.get_preferences(session, user.user_id)
    return PreferencesPublic(email=prefs.email, sms=prefs.sms)


@router.put(
    "",
    response_model=PreferencesPublic,
    summary="Choose whether notifications also reach you by email and by SMS.",
    responses=problem_responses(401, 422),
)
async def put_preferences(
    body: PreferencesUpdate, user: CurrentUser, tx: TransactionDep
) -> PreferencesPublic:
    prefs = await services.set_preferences(tx, user.user_id, Preferences(email=body.email, sms=body.sms))
    return PreferencesPublic(email=prefs.email, sms=prefs.sms)
