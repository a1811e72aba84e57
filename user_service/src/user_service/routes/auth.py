"""Registration, login, token refresh and logout, and the public keys that verify access tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from mart_common.deps import RuntimeDep, TransactionDep
from mart_common.problems import problem_responses

from user_service import services
from user_service.context import UserContextDep
from user_service.models import User
from user_service.schemas import RefreshRequest, RegisterRequest, TokenPair, UserPublic

router = APIRouter(tags=["auth"])


def client_of(request: Request) -> str:
    """The client address login throttling counts failures by."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    summary="Create a customer account.",
    responses=problem_responses(409, 422),
)
async def register(body: RegisterRequest, tx: TransactionDep, users: UserContextDep) -> User:
    return await services.register(tx, users, body)


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
    runtime: RuntimeDep,
    users: UserContextDep,
) -> TokenPair:
    # The use-case owns its transaction: a failure is committed before the 401 (services.py).
    return await services.login(
        runtime.db, users, username=form.username, password=form.password, client=client_of(request)
    )


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token for a new pair (the old one stops working).",
    description="Presenting an already rotated refresh token revokes its whole family (login session).",
    responses=problem_responses(401, 422),
)
async def refresh(body: RefreshRequest, runtime: RuntimeDep, users: UserContextDep) -> TokenPair:
    # The use-case owns its transaction: a revoked family is committed before the 401 (services.py).
    return await services.refresh(runtime.db, users, body.refresh_token)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the login session of a refresh token.",
    responses=problem_responses(401, 422),
)
async def logout(body: RefreshRequest, tx: TransactionDep, users: UserContextDep) -> Response:
    await services.logout(tx, users, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/.well-known/jwks.json",
    tags=["auth"],
    summary="The public keys (JWKS) that verify access tokens.",
)
async def jwks(users: UserContextDep) -> dict[str, Any]:
    return services.public_keys(users)
