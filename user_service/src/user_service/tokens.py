"""Access and refresh tokens: issuing, rotation and reuse detection.

A login opens a token *family*. Each refresh marks the presented token rotated and issues the next one
in the same family. Presenting a token that was already rotated means it leaked (the thief or the owner
is replaying it): the whole family is revoked, so both must log in again.
Refresh tokens are stored as the SHA-256 of their ``jti``, never as the token itself.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from mart_common.auth import InvalidToken, TokenVerifier
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from user_service.keys import KeyStore
from user_service.models import RefreshToken, User, utcnow
from user_service.schemas import TokenPair
from user_service.settings import UserSettings


class RefreshRejected(Exception):
    """The refresh token cannot be used (unknown, expired, revoked, reused or its user is inactive)."""


def jti_hash(jti: str) -> str:
    return hashlib.sha256(jti.encode()).hexdigest()


class TokenService:
    def __init__(self, settings: UserSettings, keys: KeyStore) -> None:
        self.settings = settings
        self.keys = keys
        # Refresh tokens are always checked with this service's own key, whatever verifies access tokens.
        self.verifier: TokenVerifier = keys.verifier(settings.jwt_issuer)

    def _claims(self, user: User, typ: str, ttl_s: int, jti: str) -> dict[str, object]:
        now = utcnow()
        return {
            "sub": str(user.id),
            "role": user.role,
            "iss": self.settings.jwt_issuer,
            "iat": now,
            "exp": now + timedelta(seconds=ttl_s),
            "jti": jti,
            "typ": typ,
        }

    async def issue(self, session: AsyncSession, user: User, family_id: uuid.UUID | None = None) -> TokenPair:
        """A new access + refresh pair; the refresh token is recorded in the session (caller commits)."""
        access = self.keys.sign(
            self._claims(user, "access", self.settings.access_token_ttl_s, uuid.uuid4().hex)
        )
        jti = uuid.uuid4().hex
        family_id = family_id or uuid.uuid4()
        claims = self._claims(user, "refresh", self.settings.refresh_token_ttl_s, jti)
        claims["fam"] = str(family_id)
        session.add(
            RefreshToken(
                token_hash=jti_hash(jti),
                user_id=user.id,
                family_id=family_id,
                issued_at=claims["iat"],
                expires_at=claims["exp"],
            )
        )
        return TokenPair(
            access_token=access,
            refresh_token=self.keys.sign(claims),
            expires_in=self.settings.access_token_ttl_s,
        )

    async def _stored(self, session: AsyncSession, token: str) -> RefreshToken | None:
        try:
            claims = await self.verifier.verify(token, expected_type="refresh")
        except InvalidToken as exc:
            raise RefreshRejected(str(exc)) from exc
        return await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == jti_hash(claims["jti"]))
        )

    async def revoke_family(self, session: AsyncSession, family_id: uuid.UUID) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def revoke_user(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """End every session of a user (deactivation, password change)."""
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def rotate(self, session: AsyncSession, token: str) -> TokenPair:
        """The next pair of the token's family. On reuse (or an inactive account) the family is revoked in
        the session, then RefreshRejected is raised: the caller commits the revocation all the same."""
        stored = await self._stored(session, token)
        if stored is None:
            raise RefreshRejected("unknown refresh token")
        if stored.revoked_at is not None:
            raise RefreshRejected("refresh token revoked")
        # Mark rotated only if nobody did yet: of two concurrent refreshes with one token, one wins.
        result = await session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == stored.id,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(rotated_at=utcnow())
        )
        if result.rowcount != 1:
            await self.revoke_family(session, stored.family_id)
            raise RefreshRejected("refresh token reuse detected; the session is revoked")
        user = await session.get(User, stored.user_id)
        if user is None or not user.is_active:
            await self.revoke_family(session, stored.family_id)
            raise RefreshRejected("the account is not active")
        return await self.issue(session, user, stored.family_id)

    async def logout(self, session: AsyncSession, token: str) -> None:
        """Revoke the token's family (its login session); already revoked or unknown tokens are fine."""
        stored = await self._stored(session, token)
        if stored is not None:
            await self.revoke_family(session, stored.family_id)
