"""The caller's own account, and user management for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from mart_common.deps import (
    AdminUser,
    CurrentUser,
    PageDep,
    Paginated,
    RuntimeDep,
    SessionDep,
    TransactionDep,
)
from mart_common.problems import problem_responses

from user_service import services
from user_service.context import UserContextDep
from user_service.models import User
from user_service.routes.auth import client_of
from user_service.schemas import NO_NUL, AdminUserUpdate, SelfUpdate, UserPublic

router = APIRouter(tags=["users"])


@router.get(
    "/users/me", response_model=UserPublic, summary="The caller's account.", responses=problem_responses(401)
)
async def read_me(principal: CurrentUser, session: SessionDep) -> User:
    return await services.get_me(session, principal.user_id)


@router.patch(
    "/users/me",
    response_model=UserPublic,
    summary="Update the caller's name, phone, email or password.",
    description=(
        "Changing `email` or `password` needs `current_password`: missing → 422, wrong → 403. "
        "A password change ends every login session (refresh tokens) of the account."
    ),
    responses=problem_responses(401, 403, 409, 422, 429),
)
async def update_me(
    body: SelfUpdate, request: Request, principal: CurrentUser, runtime: RuntimeDep, users: UserContextDep
) -> User:
    # The use-case owns its transaction: a wrong current password is counted (committed) before the 403.
    return await services.update_me(runtime.db, users, principal.user_id, body, client=client_of(request))


@router.get(
    "/users",
    response_model=Paginated[UserPublic],
    summary="List users (admin); `q` matches email or name.",
    responses=problem_responses(401, 403, 422),
)
async def list_users(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Part of the email or name.")
    ] = None,
) -> dict[str, object]:
    return await services.list_users(session, page, q)


@router.get(
    "/users/{user_id}",
    response_model=UserPublic,
    summary="One user (admin, or the user themself; others get 404).",
    responses=problem_responses(401, 404, 422),
)
async def read_user(user_id: uuid.UUID, principal: CurrentUser, session: SessionDep) -> User:
    return await services.get_user(session, principal, user_id)


@router.patch(
    "/users/{user_id}",
    response_model=UserPublic,
    summary="Change a user's role or active flag (admin).",
    description=(
        "Deactivating a user ends their login sessions. Admins cannot demote or deactivate themselves (409)."
    ),
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminUser, tx: TransactionDep, users: UserContextDep
) -> User:
    return await services.update_user(tx, users, admin, user_id, body)
