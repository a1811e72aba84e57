"""Registration, login, token refresh and logout, and the public keys that verify access tokens."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from mart_common.deps import SessionDep
from mart_common.problems import Conflict, Problem, problem_responses
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from user_service import events
from user_service.context import UsersDep
from user_service.models import RefreshRequest, RegisterRequest, TokenPair, User, UserPublic
from user_service.tokens import RefreshRejected

router = APIRouter(tags=["auth"])

MAX_LOGIN_FIELD = 320


def _bad_credentials() -> Problem:
    return Problem(
        401,
        "Incorrect email or password.",
        slug="invalid-credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _failed(session: SessionDep, users: UsersDep, email: str, client: str) -> NoReturn:
    """Count the failure for every replica (committed before answering 401), then answer 401."""
    await users.throttle.failed(session, email, client)
    await session.commit()
    raise _bad_credentials()


def _client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    summary="Create a customer account.",
    responses=problem_responses(409, 422),
)
async def register(body: RegisterRequest, session: SessionDep, users: UsersDep) -> User:
    email = body.email.lower()
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("An account with this email already exists.", slug="email-taken")
    user = User(
        email=email,
        full_name=body.full_name,
        phone=body.phone,
        role="customer",
        password_hash=await users.passwords.hash(body.password),
    )
    session.add(user)
    try:
        await session.flush()
        await events.publish_registered(session, user)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("An account with this email already exists.", slug="email-taken") from exc
    return user


@router.post(
    "/auth/login",
    response_model=TokenPair,
    summary="Log in with email and password (OAuth2 password form: username = email).",
    description="Repeated failures for one account or from one client answer 429 with `Retry-After`.",
    responses=problem_responses(401, 403, 422, 429),
)
async def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    users: UsersDep,
) -> TokenPair:
    email = form.username.strip().lower()[:MAX_LOGIN_FIELD]
    client = _client_of(request)
    wait = await users.throttle.retry_after(session, email, client)
    if wait is not None:
        raise Problem(
            429,
            "Too many failed logins; try again later.",
            slug="login-throttled",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )
    password = form.password
    # A NUL cannot be in any stored email (and PostgreSQL refuses it in a query): just a wrong login.
    user = None if "\x00" in email else await session.scalar(select(User).where(User.email == email))
    if user is None or len(password) > 1024:
        await users.passwords.verify_nobody(password[:1024])
        await _failed(session, users, email, client)
    ok, new_hash = await users.passwords.verify(password, user.password_hash)
    if not ok:
        await _failed(session, users, email, client)
    if not user.is_active:
        raise Problem(403, "This account is deactivated.", slug="account-deactivated")
    await users.throttle.succeeded(session, email)
    if new_hash:
        user.password_hash = new_hash  # Argon2 parameters changed: upgrade the stored hash.
    pair = await users.tokens.issue(session, user)
    await session.commit()
    return pair


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token for a new pair (the old one stops working).",
    description="Presenting an already rotated refresh token revokes its whole family (login session).",
    responses=problem_responses(401, 422),
)
async def refresh(body: RefreshRequest, session: SessionDep, users: UsersDep) -> TokenPair:
    try:
        return await users.tokens.rotate(session, body.refresh_token)
    except RefreshRejected as exc:
        raise Problem(401, f"The refresh token is not valid ({exc}).", slug="invalid-refresh-token") from exc


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the login session of a refresh token.",
    responses=problem_responses(401, 422),
)
async def logout(body: RefreshRequest, session: SessionDep, users: UsersDep) -> Response:
    try:
        await users.tokens.logout(session, body.refresh_token)
    except RefreshRejected as exc:
        raise Problem(401, f"The refresh token is not valid ({exc}).", slug="invalid-refresh-token") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/.well-known/jwks.json",
    tags=["auth"],
    summary="The public keys (JWKS) that verify access tokens.",
)
async def jwks(users: UsersDep) -> dict[str, Any]:
    return users.keys.jwks()
