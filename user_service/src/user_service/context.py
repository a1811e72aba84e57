"""The user service's context: what its use-cases need beyond the database and the bus (signing keys,
password hashing, tokens, login throttling), built when the service starts (docs/conventions.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from mart_common.service import ServiceRuntime

from user_service.keys import KeyStore, load_or_create_keys
from user_service.passwords import Passwords
from user_service.settings import UserSettings
from user_service.throttle import LoginThrottle
from user_service.tokens import TokenService


@dataclass
class UserContext:
    settings: UserSettings
    keys: KeyStore
    passwords: Passwords
    tokens: TokenService
    throttle: LoginThrottle

    @classmethod
    def build(cls, settings: UserSettings, keys: KeyStore) -> UserContext:
        return cls(
            settings=settings,
            keys=keys,
            passwords=Passwords(settings),
            tokens=TokenService(settings, keys),
            throttle=LoginThrottle(
                per_account=settings.login_max_failures_per_account,
                per_client=settings.login_max_failures_per_client,
                window_s=settings.login_window_s,
            ),
        )


@asynccontextmanager
async def open_context(
    runtime: ServiceRuntime, *, keys: KeyStore | None = None
) -> AsyncIterator[UserContext]:
    """The context of a starting user service: with ``keys`` when the app was given them (main.py, which
    also verifies tokens with them), else the keys from settings / the key file. Nothing to close."""
    settings = cast("UserSettings", runtime.settings)
    yield UserContext.build(settings, keys or load_or_create_keys(settings))


async def get_context(request: Request) -> UserContext:
    return request.app.state.runtime.context


UserContextDep = Annotated[UserContext, Depends(get_context)]
