"""The user service's definition: routes, migrations and the admin-account start-up hook."""

from __future__ import annotations

import secrets

import structlog
from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from user_service import events
from user_service.context import UserContext
from user_service.models import User
from user_service.routes import auth, users
from user_service.settings import UserSettings

log = structlog.get_logger(__name__)


async def ensure_admin(runtime: ServiceRuntime) -> None:
    """Create the admin account named by the settings if no account has that email."""
    ctx: UserContext = runtime.extras["users"]
    settings = ctx.settings
    email = settings.admin_email.strip().lower()
    async with runtime.db.session() as session:
        if await session.scalar(select(User.id).where(User.email == email)) is not None:
            return
        password = settings.admin_password
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        admin = User(
            email=email,
            full_name=settings.admin_full_name,
            role="admin",
            password_hash=await ctx.passwords.hash(password),
        )
        session.add(admin)
        try:
            await session.flush()
            await events.publish_registered(session, admin)
            await session.commit()
        except IntegrityError:
            await session.rollback()  # Another replica created it at the same moment.
            return
    if generated:
        # The only place a password is ever logged: set MART_ADMIN_PASSWORD to avoid it.
        log.warning(
            "admin_account_created_with_generated_password",
            email=email,
            password=password,
            hint="Log in with this password and change it (PATCH /users/me), or set MART_ADMIN_PASSWORD.",
        )
    else:
        log.info("admin_account_created", email=email)


async def prune_login_failures(runtime: ServiceRuntime) -> None:
    """Failures that left the throttle window (of keys never hit again) are deleted."""
    ctx: UserContext = runtime.extras["users"]
    async with runtime.db.transaction() as session:
        await ctx.throttle.prune(session)


def definition(settings: UserSettings) -> ServiceDefinition:
    return ServiceDefinition(
        name="user-service",
        title="Online Mart — user service",
        description=(
            "Accounts, login and tokens. Access tokens are RS256 JWTs (15 min) verified by every service "
            "with the keys at `/.well-known/jwks.json`; refresh tokens (7 days) rotate on every use."
        ),
        routers=[auth.router, users.router],
        migrations_package="user_service.migrations",
        on_startup=[ensure_admin],
        periodic=[PeriodicJob("prune-login-failures", 60.0, prune_login_failures)],
        openapi_tags=[
            {"name": "auth", "description": "Registration, login, refresh, logout, public keys."},
            {"name": "users", "description": "Own account; user management for admins."},
        ],
    )
