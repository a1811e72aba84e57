"""The user service's rules on their own (no app, no database)."""

from __future__ import annotations

import uuid

from user_service import domain


def test_emails_are_one_account_regardless_of_case() -> None:
    assert domain.account_email("Ann.Smith@Example.COM") == "ann.smith@example.com"
    assert domain.login_email("  Ann@Example.com ") == "ann@example.com"
    assert len(domain.login_email("a" * 10_000)) == domain.MAX_LOGIN_FIELD


def test_the_current_password_guards_email_and_password_changes_only() -> None:
    assert domain.needs_current_password(email_change=True, password_change=False)
    assert domain.needs_current_password(email_change=False, password_change=True)
    assert not domain.needs_current_password(email_change=False, password_change=False)


def test_accounts_are_seen_by_admins_and_their_owner() -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    assert domain.may_see_account(me, False, me)
    assert not domain.may_see_account(me, False, other)
    assert domain.may_see_account(me, True, other)


def test_an_admin_cannot_lock_themself_out() -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    assert domain.locks_admin_out(me, me, new_role="customer", new_active=True)
    assert domain.locks_admin_out(me, me, new_role="admin", new_active=False)
    assert not domain.locks_admin_out(me, me, new_role="admin", new_active=True)
    assert not domain.locks_admin_out(me, other, new_role="customer", new_active=False)
