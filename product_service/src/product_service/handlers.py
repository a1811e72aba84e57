"""The events the product service consumes: none (it only publishes ``mart.products.v1``)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from mart_common.inbox import EventHandler

HANDLERS: Mapping[type[Message], EventHandler] = {}
"""Event class -> handler; empty: the catalog is changed by its admins only, never by another service."""
