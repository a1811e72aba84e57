"""The user service's use-cases: one function per thing a user, an admin or the service itself does.

Most take a session already inside a transaction (``TransactionDep`` for HTTP writes, ``SessionDep`` for
reads) and never commit. Login, token refresh and changing one's own password own their transaction
(they take the :class:`~mart_common.db.Database`): some of their refusals must be committed all the same —
a counted login failure holds on every replica although the answer is 401/403, a replayed refresh token
revokes its whole login session although the answer is 401 (docs/adr/0017-refresh-token-families.md).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from mart_common.auth import Principal
from mart_common.clock import utcnow
from mart_common.db import Database, flush_unique
from mart_common.deps import Page
from mart_common.outbox import record_event
from mart_common.problems import Conflict, NotFound, Problem, Unprocessable
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from user_service import domain, events
from user_service.context import UserContext
from user_service.models import User
from user_service.schemas import AdminUserUpdate, RegisterRequest, SelfUpdate, TokenPair, UserPublic
from user_service.tokens import RefreshRejected

log = structlog.get_logger(__name__)


# --- refusals -------------------------------------------------------------------------------------


class _KeptRefusal(Exception):
    """A refusal whose bookkeeping (a counted failure, a revoked token family) is committed anyway."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@asynccontextmanager
async def _transaction(db: Database) -> AsyncIterator[AsyncSession]:
    """One transaction: committed on success and on a :class:`_KeptRefusal` (whose problem is raised once
    committed), rolled back on any other exception."""
    refusal: Problem | None = None
    async with db.transaction() as session:
        try:
            yield session
        except _KeptRefusal as kept:
            refusal = kept.problem
    if refusal is not None:
        raise refusal


def _email_taken() -> Conflict:
    return Conflict("An account with this email already exists.", slug="email-taken")


def _throttled(detail: str, wait: int) -> Problem:
    return Problem(429, detail, slug="login-throttled", headers={"Retry-After": str(wait)}, retry_after=wait)


def _bad_credentials() -> Problem:
    return Problem(
        401,
        "Incorrect email or password.",
        slug="invalid-credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _bad_refresh_token(exc: RefreshRejected) -> Problem:
    return Problem(401, f"The refresh token is not valid ({exc}).", slug="invalid-refresh-token")


# --- registration and login -----------------------------------------------------------------------


async def register(session: AsyncSession, ctx: UserContext, body: RegisterRequest) -> User:
    """A new customer account (409 when the email is taken); publishes UserRegistered."""
    email = domain.account_email(body.email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise _email_taken()
    user = User(
        email=email,
        full_name=body.full_name,
        phone=body.phone,
        role="customer",
        password_hash=await ctx.passwords.hash(body.password),
    )
    session.add(user)
    await flush_unique(session, _email_taken())
    await record_event(session, events.user_registered(user), key=str(user.id))
    return user


async def login(db: Database, ctx: UserContext, *, username: str, password: str, client: str) -> TokenPair:
    """A token pair for the right email and password. Failures are counted per account and per client
    (committed before the 401); too many within the window answer 429 with ``Retry-After``."""
    email = domain.login_email(username)
    async with _transaction(db) as session:
        wait = await ctx.throttle.retry_after(session, email, client)
        if wait is not None:
            raise _throttled("Too many failed logins; try again later.", wait)
        # A NUL cannot be in any stored email (and PostgreSQL refuses it in a query): just a wrong login.
        user = None if "\x00" in email else await session.scalar(select(User).where(User.email == email))
        if user is None or len(password) > domain.MAX_CHECKED_PASSWORD:
            await ctx.passwords.verify_nobody(password[: domain.MAX_CHECKED_PASSWORD])
            ok, new_hash = False, None
        else:
            ok, new_hash = await ctx.passwords.verify(password, user.password_hash)
        if not ok or user is None:
            await ctx.throttle.failed(session, email, client)
            raise _KeptRefusal(_bad_credentials())
        if not user.is_active:
            raise Problem(403, "This account is deactivated.", slug="account-deactivated")
        await ctx.throttle.succeeded(session, email)
        if new_hash:
            user.password_hash = new_hash  # Argon2 parameters changed: upgrade the stored hash.
        return await ctx.tokens.issue(session, user)


async def refresh(db: Database, ctx: UserContext, token: str) -> TokenPair:
    """The next token pair of a refresh token's login session; a replayed (already rotated) token
    revokes that whole session (committed) and answers 401."""
    async with _transaction(db) as session:
        try:
            return await ctx.tokens.rotate(session, token)
        except RefreshRejected as exc:
            raise _KeptRefusal(_bad_refresh_token(exc)) from exc


async def logout(session: AsyncSession, ctx: UserContext, token: str) -> None:
    """End the login session of a refresh token (401 for a token that is not one of ours)."""
    try:
        await ctx.tokens.logout(session, token)
    except RefreshRejected as exc:
        raise _bad_refresh_token(exc) from exc


def public_keys(ctx: UserContext) -> dict[str, Any]:
    """The JWKS that verifies access tokens: the current key, and the previous one during a rotation."""
    return ctx.keys.jwks()


# --- own account ----------------------------------------------------------------------------------


async def _active_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Problem(
            401, "The account no longer exists or is deactivated.", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


async def get_me(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The caller's account (401 when it was deleted or deactivated since the token was issued)."""
    return await _active_user(session, user_id)


def _public(user: User) -> dict[str, object]:
    return UserPublic.model_validate(user).model_dump()


async def _check_current_password(
    session: AsyncSession, ctx: UserContext, user: User, current_password: str | None, client: str
) -> None:
    """The caller proves it is the account's owner: 422 without ``current_password``, 429 while
    throttled, 403 when wrong (the failure counted like a failed login, committed)."""
    if not current_password:
        raise Unprocessable(
            "Changing the email or the password needs current_password.", slug="current-password-required"
        )
    wait = await ctx.throttle.retry_after(session, user.email, client)
    if wait is not None:
        raise _throttled("Too many wrong passwords; try again later.", wait)
    ok, _ = await ctx.passwords.verify(current_password, user.password_hash)
    if not ok:
        await ctx.throttle.failed(session, user.email, client)
        raise _KeptRefusal(Problem(403, "The current password is wrong.", slug="wrong-password"))


async def _change_contact(
    session: AsyncSession, user: User, body: SelfUpdate, new_email: str | None
) -> tuple[bool, bool]:
    """Apply the name, phone and email sent (409 for another account's email): (contact details changed,
    email changed)."""
    fields = body.model_fields_set
    before = _public(user)
    if "full_name" in fields and body.full_name is not None:
        user.full_name = body.full_name
    if "phone" in fields:
        user.phone = body.phone
    email_changed = new_email is not None and new_email != user.email
    if email_changed:
        taken = await session.scalar(select(User.id).where(User.email == new_email, User.id != user.id))
        if taken is not None:
            raise _email_taken()
        user.email = new_email
    return _public(user) != before, email_changed


async def update_me(
    db: Database, ctx: UserContext, user_id: uuid.UUID, body: SelfUpdate, *, client: str
) -> User:
    """Change the caller's name, phone, email or password. A new email or password needs the current
    password; a new password ends every login session; a contact change publishes UserUpdated."""
    fields = body.model_fields_set
    new_email = domain.account_email(body.email) if "email" in fields and body.email is not None else None
    new_password = body.password if "password" in fields and body.password is not None else None
    async with _transaction(db) as session:
        user = await _active_user(session, user_id)
        if domain.needs_current_password(
            email_change=new_email is not None, password_change=bool("password" in fields and body.password)
        ):
            await _check_current_password(session, ctx, user, body.current_password, client)
        contact_changed, email_changed = await _change_contact(session, user, body, new_email)
        if not (contact_changed or new_password is not None):
            return user
        user.updated_at = utcnow()
        if new_password is not None:
            user.password_hash = await ctx.passwords.hash(new_password)
        if email_changed:
            await flush_unique(session, _email_taken())
        if new_password is not None:
            await ctx.tokens.revoke_user(session, user.id)
        if contact_changed:  # UserUpdated carries contact details; a new password alone is not news.
            await record_event(session, events.user_updated(user), key=str(user.id))
        return user


# --- user management (admins) ---------------------------------------------------------------------


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(session: AsyncSession, page: Page, q: str | None) -> dict[str, object]:
    """A page of accounts in creation order; ``q`` matches part of the email or the name."""
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


async def get_user(session: AsyncSession, viewer: Principal, user_id: uuid.UUID) -> User:
    """One account, for an admin or its owner (404 for anyone else, as for an unknown id)."""
    if not domain.may_see_account(viewer.user_id, viewer.is_admin, user_id):
        raise NotFound("No such user.")
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def update_user(
    session: AsyncSession, ctx: UserContext, admin: Principal, user_id: uuid.UUID, body: AdminUserUpdate
) -> User:
    """Change an account's role or active flag (no-op when nothing changes). Deactivation ends its login
    sessions; admins cannot demote or deactivate themselves (409). Publishes UserUpdated."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    fields = body.model_fields_set
    new_role = body.role if "role" in fields and body.role is not None else user.role
    new_active = body.is_active if "is_active" in fields and body.is_active is not None else user.is_active
    if domain.locks_admin_out(admin.user_id, user.id, new_role=new_role, new_active=new_active):
        raise Conflict("Admins cannot demote or deactivate themselves.", slug="self-lockout")
    if (new_role, new_active) == (user.role, user.is_active):
        return user
    user.role = new_role
    if user.is_active and not new_active:
        await ctx.tokens.revoke_user(session, user.id)
    user.is_active = new_active
    user.updated_at = utcnow()
    await record_event(session, events.user_updated(user), key=str(user.id))
    return user


# --- the service's own jobs -----------------------------------------------------------------------


async def ensure_admin(db: Database, ctx: UserContext) -> None:
    """At start: create the admin account named by the settings unless an account has that email."""
    settings = ctx.settings
    email = domain.account_email(settings.admin_email.strip())
    password = settings.admin_password or secrets.token_urlsafe(12)
    async with db.transaction() as session:
        if await session.scalar(select(User.id).where(User.email == email)) is not None:
            return
        admin = User(
            email=email,
            full_name=settings.admin_full_name,
            role="admin",
            password_hash=await ctx.passwords.hash(password),
        )
        session.add(admin)
        try:
            await flush_unique(session, _email_taken())
        except Conflict:
            return  # Another replica created it at the same moment.
        await record_event(session, events.user_registered(admin), key=str(admin.id))
    if settings.admin_password:
        log.info("admin_account_created", email=email)
    else:
        # The only place a password is ever logged: set MART_ADMIN_PASSWORD to avoid it.
        log.warning(
            "admin_account_created_with_generated_password",
            email=email,
            password=password,
            hint="Log in with this password and change it (PATCH /users/me), or set MART_ADMIN_PASSWORD.",
        )


async def prune_login_failures(db: Database, ctx: UserContext) -> int:
    """Delete the login failures that left the throttle window (of keys never hit again); how many."""
    async with db.transaction() as session:
        return await ctx.throttle.prune(session)
