"""Argon2 password hashing (pwdlib), always off the event loop: a hash costs tens of milliseconds."""

from __future__ import annotations

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from user_service.settings import UserSettings


class Passwords:
    def __init__(self, settings: UserSettings) -> None:
        params = {
            name: value
            for name, value in (
                ("time_cost", settings.argon2_time_cost),
                ("memory_cost", settings.argon2_memory_cost),
                ("parallelism", settings.argon2_parallelism),
            )
            if value is not None
        }
        self._hash = PasswordHash((Argon2Hasher(**params),))
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one uses outdated parameters)."""
        return await anyio.to_thread.run_sync(self._hash.verify_and_update, password, hashed)

    async def verify_nobody(self, password: str) -> None:
        """Spend the time of a real verification, so unknown emails cannot be told apart by timing."""
        if self._dummy is None:
            self._dummy = await self.hash("not-a-real-password")
        await anyio.to_thread.run_sync(self._hash.verify, password, self._dummy)
