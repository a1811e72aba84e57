"""The events the user service consumes: none (it only publishes ``mart.users.v1``)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from mart_common.inbox import EventHandler

HANDLERS: Mapping[type[Message], EventHandler] = {}
"""Event class -> handler; empty: no other service's event changes accounts."""
