"""The registry of the event contracts: CloudEvents ``ce_type`` <-> generated Protobuf message class.

The contracts live in ``protos/mart/<domain>/v1/<domain>.proto`` (generated into the ``mart`` package by
``scripts/gen-protos.sh``). One Protobuf package is one Kafka topic (``mart.orders.v1`` ...), and an
event's ``ce_type`` is its message's full name (``mart.orders.v1.OrderPlaced``).

Which messages are events: the registry lists them explicitly (:data:`_EVENTS` below). The other
top-level messages of the contract files are payload parts that are never published alone
(:data:`HELPER_MESSAGES`: ``StockLine``, ``RejectedLine``, ``Product``, ``OrderLine``). Every message of
every contract file must be in exactly one of the two lists: the tests check it, so a new message is
never silently left out (add it to ``_EVENTS`` when it is published, to ``HELPER_MESSAGES`` otherwise).
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart.products.v1 import products_pb2
from mart.stock.v1 import stock_pb2
from mart.users.v1 import users_pb2

__all__ = [
    "HELPER_MESSAGES",
    "TOPICS",
    "CONTRACT_MODULES",
    "MalformedEvent",
    "UnknownEventType",
    "all_event_types",
    "ce_type",
    "decode",
    "message_class",
    "topic_for",
]


class UnknownEventType(KeyError):
    """The ``ce_type`` names no registered event message."""


class MalformedEvent(ValueError):
    """The payload is not a valid serialization of the message its ``ce_type`` names."""


#: The generated module of every contract file, one per topic.
CONTRACT_MODULES = (users_pb2, products_pb2, stock_pb2, orders_pb2, payments_pb2)

#: Every topic, i.e. every contract package, in the order of CONTRACT_MODULES.
TOPICS: tuple[str, ...] = tuple(module.DESCRIPTOR.package for module in CONTRACT_MODULES)

_EVENTS: tuple[type[Message], ...] = (
    users_pb2.UserRegistered,
    users_pb2.UserUpdated,
    products_pb2.ProductCreated,
    products_pb2.ProductUpdated,
    products_pb2.ProductArchived,
    stock_pb2.StockReserved,
    stock_pb2.StockRejected,
    stock_pb2.StockReleased,
    stock_pb2.StockCommitted,
    stock_pb2.StockLow,
    orders_pb2.OrderPlaced,
    orders_pb2.OrderAwaitingPayment,
    orders_pb2.OrderPaid,
    orders_pb2.OrderRejected,
    orders_pb2.OrderCancelled,
    orders_pb2.OrderShipped,
    orders_pb2.OrderDelivered,
    payments_pb2.PaymentRequested,
    payments_pb2.PaymentSucceeded,
    payments_pb2.PaymentFailed,
    payments_pb2.PaymentRefunded,
)

#: Full names of the contract messages that are parts of events, never events themselves.
HELPER_MESSAGES: frozenset[str] = frozenset(
    {
        stock_pb2.StockLine.DESCRIPTOR.full_name,
        stock_pb2.RejectedLine.DESCRIPTOR.full_name,
        products_pb2.Product.DESCRIPTOR.full_name,
        orders_pb2.OrderLine.DESCRIPTOR.full_name,
    }
)

_REGISTRY: dict[str, type[Message]] = {cls.DESCRIPTOR.full_name: cls for cls in _EVENTS}


def message_class(ce_type: str) -> type[Message]:
    """Return the generated message class of the event whose CloudEvents type is ``ce_type``.

    Raises :class:`UnknownEventType` (a ``KeyError``) when no event of that name is registered,
    including for helper messages such as ``mart.orders.v1.OrderLine``.
    """
    try:
        return _REGISTRY[ce_type]
    except KeyError:
        raise UnknownEventType(ce_type) from None


def _descriptor(message_or_class: Message | type[Message]) -> Descriptor:
    descriptor = getattr(message_or_class, "DESCRIPTOR", None)
    full_name = getattr(descriptor, "full_name", None)
    if full_name not in _REGISTRY:
        raise UnknownEventType(full_name or repr(message_or_class))
    return descriptor


def ce_type(message_or_class: Message | type[Message]) -> str:
    """Return the CloudEvents type of an event message or message class: its full Protobuf name.

    Example: ``ce_type(OrderPlaced()) == "mart.orders.v1.OrderPlaced"``. Raises :class:`UnknownEventType`
    for anything that is not a registered event.
    """
    return _descriptor(message_or_class).full_name


def topic_for(message_or_class: Message | type[Message]) -> str:
    """Return the Kafka topic an event message or message class is published on: its Protobuf package.

    Example: ``topic_for(OrderPlaced) == "mart.orders.v1"``. Raises :class:`UnknownEventType` for
    anything that is not a registered event.
    """
    return _descriptor(message_or_class).file.package


def all_event_types() -> list[str]:
    """Return the CloudEvents type of every registered event, sorted."""
    return sorted(_REGISTRY)


def decode(ce_type: str, payload: bytes) -> Message:
    """Parse ``payload`` (binary Protobuf) as the event message that ``ce_type`` names.

    Raises :class:`UnknownEventType` for an unknown ``ce_type`` and :class:`MalformedEvent` (a
    ``ValueError``) when the bytes are not a valid serialization of that message.
    """
    cls = message_class(ce_type)
    message = cls()
    try:
        message.ParseFromString(payload)
    except (DecodeError, TypeError, ValueError) as exc:
        raise MalformedEvent(f"{ce_type}: payload does not parse: {exc}") from exc
    return message
