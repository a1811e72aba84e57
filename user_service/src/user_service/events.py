"""Builders of the events the user service publishes on ``mart.users.v1`` (key = user id; docs/events.md)."""

from __future__ import annotations

from mart.users.v1 import users_pb2
from mart_common.clock import utcnow

from user_service.models import User

_ROLES = {"customer": users_pb2.ROLE_CUSTOMER, "admin": users_pb2.ROLE_ADMIN}


def user_registered(user: User) -> users_pb2.UserRegistered:
    event = users_pb2.UserRegistered(
        user_id=str(user.id),
        email=user.email,
        full_name=user.full_name,
        phone=user.phone or "",
        role=_ROLES.get(user.role, users_pb2.ROLE_UNSPECIFIED),
    )
    event.registered_at.FromDatetime(user.created_at)
    return event


def user_updated(user: User) -> users_pb2.UserUpdated:
    event = users_pb2.UserUpdated(
        user_id=str(user.id),
        email=user.email,
        full_name=user.full_name,
        phone=user.phone or "",
        role=_ROLES.get(user.role, users_pb2.ROLE_UNSPECIFIED),
        is_active=user.is_active,
    )
    event.updated_at.FromDatetime(user.updated_at or utcnow())
    return event
