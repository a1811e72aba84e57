"""Login throttling shared by every replica: recent failures per account and per client address, stored in
the user service's own database (table ``login_failures``), so N replicas behind Kong give an attacker the
same budget as one, and a restart forgets nothing (docs/adr/0018-login-throttling-in-the-database.md).

A failure is one row per scope (``account``: the lower-cased email; ``client``: the address), keyed by a
SHA-256 of the scope and the value (fixed length, no email in clear, any input storable). A login is refused
while a scope has ``limit`` failures in the sliding window; ``Retry-After`` is when the oldest of the last
``limit`` failures leaves it. A success clears the account's failures. Old rows are pruned as keys are hit
and by a periodic job.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from mart_common.clock import as_utc, utcnow
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from user_service.models import LoginFailure

ACCOUNT = "account"
CLIENT = "client"


def throttle_key(scope: str, value: str) -> str:
    return hashlib.sha256(f"{scope}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """Failed logins per account (email) and per client, in the database; a success clears the account."""

    def __init__(self, *, per_account: int, per_client: int, window_s: float) -> None:
        self.limits = {ACCOUNT: per_account, CLIENT: per_client}
        self.window = timedelta(seconds=window_s)

    async def _wait(self, session: AsyncSession, scope: str, value: str) -> float | None:
        limit = self.limits[scope]
        now = utcnow()
        # The limit-th most recent failure inside the window: while it is there, the scope is blocked.
        oldest_counted = await session.scalar(
            select(LoginFailure.failed_at)
            .where(
                LoginFailure.key == throttle_key(scope, value),
                LoginFailure.failed_at > now - self.window,
            )
            .order_by(LoginFailure.failed_at.desc())
            .offset(limit - 1)
            .limit(1)
        )
        if oldest_counted is None:
            return None
        return (as_utc(oldest_counted) + self.window - now).total_seconds()

    async def retry_after(self, session: AsyncSession, email: str, client: str) -> int | None:
        """Whole seconds to wait (for ``Retry-After``), or None when a login may be attempted."""
        waits = [
            w
            for w in (await self._wait(session, ACCOUNT, email), await self._wait(session, CLIENT, client))
            if w is not None
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    async def failed(self, session: AsyncSession, email: str, client: str) -> None:
        """Record a failure (the caller commits, also when it then answers 401/403)."""
        now = utcnow()
        for scope, value in ((ACCOUNT, email), (CLIENT, client)):
            key = throttle_key(scope, value)
            await session.execute(
                delete(LoginFailure).where(
                    LoginFailure.key == key, LoginFailure.failed_at <= now - self.window
                )
            )
            session.add(LoginFailure(key=key, failed_at=now))
        await session.flush()

    async def succeeded(self, session: AsyncSession, email: str) -> None:
        await session.execute(delete(LoginFailure).where(LoginFailure.key == throttle_key(ACCOUNT, email)))

    async def prune(self, session: AsyncSession) -> int:
        """Delete failures that left the window (all keys); returns how many."""
        result = await session.execute(
            delete(LoginFailure).where(LoginFailure.failed_at <= utcnow() - self.window)
        )
        return result.rowcount or 0
