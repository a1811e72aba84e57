"""The user service's definition: routes, migrations, its context, the admin-account start-up hook and the
pruning of old login failures (wiring only: the use-cases are in services.py)."""

from __future__ import annotations

import functools

from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from user_service import services
from user_service.context import open_context
from user_service.handlers import HANDLERS
from user_service.keys import KeyStore
from user_service.routes import auth, users
from user_service.settings import UserSettings


async def ensure_admin(runtime: ServiceRuntime) -> None:
    await services.ensure_admin(runtime.db, runtime.context)


async def prune_login_failures(runtime: ServiceRuntime) -> None:
    await services.prune_login_failures(runtime.db, runtime.context)


def definition(settings: UserSettings, *, keys: KeyStore | None = None) -> ServiceDefinition:
    """``keys``: sign with these (main.py also verifies access tokens with them); by default the keys from
    settings or the key file, loaded when the service starts."""
    return ServiceDefinition(
        name=settings.service_name,
        title="Online Mart — user service",
        description=(
            "Accounts, login and tokens. Access tokens are RS256 JWTs (15 min) verified by every service "
            "with the keys at `/.well-known/jwks.json`; refresh tokens (7 days) rotate on every use."
        ),
        routers=[auth.router, users.router],
        migrations_package="user_service.migrations",
        handlers=HANDLERS,
        context=functools.partial(open_context, keys=keys),
        on_startup=[ensure_admin],
        periodic=[PeriodicJob("prune-login-failures", 60.0, prune_login_failures)],
        openapi_tags=[
            {"name": "auth", "description": "Registration, login, refresh, logout, public keys."},
            {"name": "users", "description": "Own account; user management for admins."},
        ],
    )
