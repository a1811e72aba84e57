"""The user service's tables (its own registry)."""

from __future__ import annotations

import uuid
from datetime import datetime

from mart_common.clock import utcnow
from sqlalchemy import Column, DateTime, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class UserTable(SQLModel, registry=registry()):
    pass


class User(UserTable, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)  # stored lower-case
    full_name: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    role: str = Field(default="customer", max_length=20)
    is_active: bool = Field(default=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class RefreshToken(UserTable, table=True):
    """One issued refresh token; rotation marks it used, reuse revokes its family (one login session)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family", "family_id"),
        Index("ix_refresh_tokens_user", "user_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)  # sha256 of the token's jti
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    family_id: uuid.UUID
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    rotated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class LoginFailure(UserTable, table=True):
    """One failed login (or wrong current password) for one throttle key; shared by all replicas."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    key: str = Field(max_length=64)  # sha256 hex of "<scope>:<email or client address>"
    failed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


METADATA = UserTable.metadata
