"""The caller's own account, and user management for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from mart_common.deps import AdminUser, CurrentUser, PageDep, Paginated, SessionDep
from mart_common.problems import Conflict, NotFound, Problem, Unprocessable, problem_responses
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from user_service import events
from user_service.context import UsersDep
from user_service.models import NO_NUL, AdminUserUpdate, SelfUpdate, User, UserPublic, utcnow

router = APIRouter(tags=["users"])


def _public(user: User) -> dict[str, object]:
    return UserPublic.model_validate(user).model_dump()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _me(session: AsyncSession, principal_id: uuid.UUID) -> User:
    user = await session.get(User, principal_id)
    if user is None or not user.is_active:
        raise Problem(
            401, "The account no longer exists or is deactivated.", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


@router.get(
    "/users/me", response_model=UserPublic, summary="The caller's account.", responses=problem_responses(401)
)
async def read_me(principal: CurrentUser, session: SessionDep) -> User:
    return await _me(session, principal.user_id)


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
    body: SelfUpdate, request: Request, principal: CurrentUser, session: SessionDep, users: UsersDep
) -> User:
    user = await _me(session, principal.user_id)
    fields = body.model_fields_set
    sensitive = ("email" in fields and body.email is not None) or ("password" in fields and body.password)
    if sensitive:
        if not body.current_password:
            raise Unprocessable(
                "Changing the email or the password needs current_password.", slug="current-password-required"
            )
        client = request.client.host if request.client else "unknown"
        wait = await users.throttle.retry_after(session, user.email, client)
        if wait is not None:
            raise Problem(
                429,
                "Too many wrong passwords; try again later.",
                slug="login-throttled",
                headers={"Retry-After": str(wait)},
                retry_after=wait,
            )
        ok, _ = await users.passwords.verify(body.current_password, user.password_hash)
        if not ok:
            await users.throttle.failed(session, user.email, client)
            await session.commit()  # the failure counts on every replica, although the answer is 403
            raise Problem(403, "The current password is wrong.", slug="wrong-password")
    before = _public(user)
    if "full_name" in fields and body.full_name is not None:
        user.full_name = body.full_name
    if "phone" in fields:
        user.phone = body.phone
    if "email" in fields and body.email is not None:
        email = body.email.lower()
        if email != user.email:
            taken = await session.scalar(select(User.id).where(User.email == email, User.id != user.id))
            if taken is not None:
                raise Conflict("An account with this email already exists.", slug="email-taken")
            user.email = email
    password_changed = "password" in fields and body.password is not None
    if password_changed:
        user.password_hash = await users.passwords.hash(body.password)
        await users.tokens.revoke_user(session, user.id)
    contact_changed = _public(user) != before
    if contact_changed or password_changed:
        user.updated_at = utcnow()
        if contact_changed:  # UserUpdated carries contact details; a new password alone is not news.
            await events.publish_updated(session, user)
        try:
            await session.commit()
        except IntegrityError as exc:
            await session.rollback()
            raise Conflict("An account with this email already exists.", slug="email-taken") from exc
    return user


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
    conditions = []
    if q:
        pattern = f"%{_escape_like(q.lower())}%"
        conditions.append(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.full_name).like(pattern, escape="\\"),
            )
        )
    return await page.of(session, select(User).where(*conditions).order_by(User.created_at, User.id))


@router.get(
    "/users/{user_id}",
    response_model=UserPublic,
    summary="One user (admin, or the user themself; others get 404).",
    responses=problem_responses(401, 404, 422),
)
async def read_user(user_id: uuid.UUID, principal: CurrentUser, session: SessionDep) -> User:
    if not principal.is_admin and principal.user_id != user_id:
        raise NotFound("No such user.")
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


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
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminUser, session: SessionDep, users: UsersDep
) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    fields = body.model_fields_set
    new_role = body.role if "role" in fields and body.role is not None else user.role
    new_active = body.is_active if "is_active" in fields and body.is_active is not None else user.is_active
    if user.id == admin.user_id and (new_role != "admin" or not new_active):
        raise Conflict("Admins cannot demote or deactivate themselves.", slug="self-lockout")
    if (new_role, new_active) == (user.role, user.is_active):
        return user
    user.role = new_role
    if user.is_active and not new_active:
        await users.tokens.revoke_user(session, user.id)
    user.is_active = new_active
    user.updated_at = utcnow()
    await events.publish_updated(session, user)
    await session.commit()
    return user
