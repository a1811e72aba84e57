"""The user service's rules, without framework or database: roles, e-mail identity, who may change what."""

from __future__ import annotations

import uuid
from typing import Literal

Role = Literal["customer", "admin"]

# A login form's username is cut to this length before it is looked up or counted by the throttle.
MAX_LOGIN_FIELD = 320
# Passwords longer than this are never checked (they cannot be ours: at most 128 characters are set).
MAX_CHECKED_PASSWORD = 1024


def account_email(email: str) -> str:
    """An account's email as it is stored and looked up: lower-case (``Alice@X`` and ``alice@x`` are one)."""
    return email.lower()


def login_email(username: str) -> str:
    """The email a login form names: trimmed, lower-case, bounded."""
    return username.strip().lower()[:MAX_LOGIN_FIELD]


def needs_current_password(*, email_change: bool, password_change: bool) -> bool:
    """Changing the email or the password of one's own account needs the current password."""
    return email_change or password_change


def may_see_account(viewer_id: uuid.UUID, viewer_is_admin: bool, account_id: uuid.UUID) -> bool:
    """Admins see every account, users their own (others' accounts are "not found", not "forbidden")."""
    return viewer_is_admin or viewer_id == account_id


def locks_admin_out(actor_id: uuid.UUID, account_id: uuid.UUID, *, new_role: str, new_active: bool) -> bool:
    """An admin may not demote or deactivate themself (the mart could be left without an admin)."""
    return actor_id == account_id and (new_role != "admin" or not new_active)
