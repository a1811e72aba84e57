"""The user service's tables (its own registry) and the request/response schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from mart_common.clock import UtcDatetime, utcnow
from pydantic import BaseModel, ConfigDict, EmailStr, StringConstraints
from pydantic import Field as PField
from sqlalchemy import Column, DateTime, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

Role = Literal["customer", "admin"]


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

# --- schemas ---------------------------------------------------------------------------------------

# PostgreSQL text cannot hold NUL characters: refuse them at the edge (422), never a 500 from the driver.
NO_NUL = r"^[^\x00]*$"

Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
FullName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32, pattern=r"^\+?[0-9 ().\-]+$")
]
Email = Annotated[EmailStr, StringConstraints(max_length=254, pattern=NO_NUL)]


class UserPublic(BaseModel):
    """A user as the API shows it: never any password hash."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    phone: str | None
    role: Role
    is_active: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    full_name: FullName
    phone: Phone | None = None


class SelfUpdate(BaseModel):
    """``PATCH /users/me``: changing ``email`` or ``password`` needs ``current_password``."""

    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    phone: Phone | None = None
    email: Email | None = None
    password: Password | None = None
    current_password: Annotated[str, StringConstraints(max_length=128)] | None = None


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int = PField(description="Seconds until the access token expires.")
