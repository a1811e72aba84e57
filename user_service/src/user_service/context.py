"""What the user service's routes need beyond the shared runtime: keys, hashing, tokens, throttling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from user_service.keys import KeyStore
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


def get_context(request: Request) -> UserContext:
    return request.app.state.runtime.extras["users"]


UsersDep = Annotated[UserContext, Depends(get_context)]
