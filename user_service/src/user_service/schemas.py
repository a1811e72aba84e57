"""The user service's HTTP request and response models (docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from mart_common.clock import UtcDatetime
from pydantic import BaseModel, ConfigDict, EmailStr, StringConstraints
from pydantic import Field as PField

from user_service.domain import Role

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
