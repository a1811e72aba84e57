"""Looking at the bus from outside (``mart events``, docs/looking-around.md): what each adapter can tell
about its topics and consumer groups, a tail of the records, and an event decoded for people to read.

Both adapters implement :meth:`EventBus.topics_overview` and :meth:`EventBus.tail` with these types; the
reading never joins a consumer group, so looking changes no group's position.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from google.protobuf.json_format import MessageToDict

from mart_common.contracts import MalformedEvent, UnknownEventType, decode
from mart_common.messaging import BusMessage

#: The CloudEvents headers, in the order they are shown (docs/events.md, "The envelope").
CE_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type")


@dataclass(frozen=True)
class GroupLag:
    """One consumer group's position on one topic: committed records and what is still to consume."""

    group: str
    committed: int
    lag: int


@dataclass(frozen=True)
class TopicInfo:
    """A topic (stream): its partitions, the records it holds now, the groups that consume it."""

    topic: str
    partitions: int
    messages: int
    groups: tuple[GroupLag, ...] = ()


def group_lags(
    ends: dict[int, int], committed: dict[str, dict[int, int]], starts: dict[int, int] | None = None
) -> tuple[GroupLag, ...]:
    """Lag per group from the partitions' end offsets and each group's committed next offsets.

    A partition the group has not committed on yet counts from the partition's start (``starts``).
    """
    starts = starts or {}
    out = []
    for group in sorted(committed):
        positions = committed[group]
        lag = 0
        done = 0
        for part, end in ends.items():
            position = positions.get(part, starts.get(part, 0))
            lag += max(0, end - position)
            done += max(0, position - starts.get(part, 0))
        out.append(GroupLag(group=group, committed=done, lag=lag))
    return tuple(out)


class EventTail(ABC):
    """Records of some topics as they arrive: ``async with bus.tail(...) as tail: async for msg in tail``.

    Entering positions the reader (at the start of each partition, or at its current end), so a record
    published after ``__aenter__`` returned is always seen. With ``follow=False`` the iteration ends at
    the end the topics had on entering.
    """

    @abstractmethod
    async def __aenter__(self) -> EventTail: ...

    @abstractmethod
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[BusMessage]: ...


@dataclass(frozen=True)
class EventFilter:
    """Which records a tail shows. ``type``: the full ``ce_type`` or its last part (``OrderPaid``);
    ``key``: the record key; ``order``: the key, or the payload's ``order_id`` (payment events are keyed
    by the payment)."""

    types: tuple[str, ...] = ()
    key: str | None = None
    order: str | None = None

    def matches(self, msg: BusMessage, event: dict[str, Any] | None = None) -> bool:
        if self.types:
            ce_type = msg.header("ce_type") or ""
            if not any(t in (ce_type, ce_type.rsplit(".", 1)[-1]) for t in self.types):
                return False
        if self.key is not None and msg.key != self.key:
            return False
        if self.order is not None and msg.key != self.order:
            payload = (event or describe(msg)).get("payload") or {}
            if str(payload.get("order_id", "")) != self.order:
                return False
        return True


@dataclass
class DecodedEvent:
    """A record as people read it (and as ``mart events tail --json`` prints it)."""

    topic: str
    partition: int | None
    offset: int | None
    key: str
    headers: dict[str, str]
    type: str | None
    payload: dict[str, Any] | None = None
    error: str | None = None
    raw: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "type": self.type,
            "headers": self.headers,
            "payload": self.payload,
        }
        if self.error:
            out["error"] = self.error
            out["payload_base64"] = self.raw
        return out


def decode_event(msg: BusMessage) -> DecodedEvent:
    """The record's headers and its Protobuf payload as JSON (field names as in the .proto files)."""
    headers = {k: v.decode("utf-8", "replace") for k, v in msg.headers}
    ce_type = headers.get("ce_type")
    event = DecodedEvent(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        headers=headers,
        type=ce_type,
    )
    if not ce_type:
        event.error = "no ce_type header"
    else:
        try:
            event.payload = MessageToDict(
                decode(ce_type, msg.value),
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        except (UnknownEventType, MalformedEvent) as exc:
            event.error = f"{type(exc).__name__}: {exc}"
    if event.error:
        event.raw = base64.b64encode(msg.value).decode()
    return event


def describe(msg: BusMessage) -> dict[str, Any]:
    return decode_event(msg).as_dict()
