"""What travels on the bus: the message, its CloudEvents headers, and the outbox/inbox tables.

Headers follow the CloudEvents Kafka protocol binding, binary mode: ``ce_id``, ``ce_type`` (the Protobuf
message's full name), ``ce_source``, ``ce_time``, ``ce_specversion`` and ``content-type``; plus W3C
``traceparent`` and our ``correlation_id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from mart_common.clock import utcnow

CONTENT_TYPE = "application/protobuf"
SPEC_VERSION = "1.0"

MESSAGING_METADATA = MetaData()
"""Tables every service database carries, next to its own: the outbox and the inbox."""

_BigIntId = BigInteger().with_variant(Integer, "sqlite")

outbox_table = Table(
    "outbox",
    MESSAGING_METADATA,
    Column("seq", _BigIntId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("ce_type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Index("ix_outbox_unpublished", "published_at", "seq"),
)

inbox_table = Table(
    "inbox",
    MESSAGING_METADATA,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("ce_type", String(200), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A record as the bus carries it: topic, key, value bytes and headers."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    # Where the record came from (set by the adapters on delivery; informative only).
    partition: int | None = None
    offset: int | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None

    def with_headers(
        self, *, topic: str | None = None, drop_prefix: str | None = None, **extra: str
    ) -> BusMessage:
        """A copy with ``extra`` headers set (replacing same-named ones), optionally another topic."""
        kept = tuple(
            (k, v)
            for k, v in self.headers
            if k not in extra and not (drop_prefix and k.startswith(drop_prefix))
        )
        return BusMessage(
            topic=topic or self.topic,
            key=self.key,
            value=self.value,
            headers=kept + tuple((k, v.encode()) for k, v in extra.items()),
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of one event plus its payload."""

    id: str
    type: str
    source: str
    time: datetime
    topic: str
    key: str
    payload: bytes
    correlation_id: str | None = None
    traceparent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        type: str,
        source: str,
        topic: str,
        key: str,
        payload: bytes,
        correlation_id: str | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        return cls(
            id=str(uuid.uuid4()),
            type=type,
            source=source,
            time=utcnow(),
            topic=topic,
            key=key,
            payload=payload,
            correlation_id=correlation_id,
            traceparent=traceparent,
        )

    def headers(self) -> dict[str, str]:
        h = {
            "ce_id": self.id,
            "ce_type": self.type,
            "ce_source": self.source,
            "ce_time": self.time.isoformat().replace("+00:00", "Z"),
            "ce_specversion": SPEC_VERSION,
            "content-type": CONTENT_TYPE,
        }
        if self.correlation_id:
            h["correlation_id"] = self.correlation_id
        if self.traceparent:
            h["traceparent"] = self.traceparent
        h.update(self.extra)
        return h

    def to_bus(self) -> BusMessage:
        return BusMessage(
            topic=self.topic,
            key=self.key,
            value=self.payload,
            headers=tuple((k, v.encode()) for k, v in self.headers().items()),
        )

    @classmethod
    def from_bus(cls, msg: BusMessage) -> Envelope:
        """Parse the CloudEvents headers; raises :class:`MissingHeaders` when required ones are absent."""
        h = {k: v.decode("utf-8", "replace") for k, v in msg.headers}
        missing = [k for k in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion") if not h.get(k)]
        if missing:
            raise MissingHeaders(f"missing CloudEvents headers: {', '.join(missing)}")
        try:
            time = datetime.fromisoformat(h["ce_time"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise MissingHeaders(f"bad ce_time: {h['ce_time']!r}") from exc
        known = {"ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type"}
        return cls(
            id=h["ce_id"],
            type=h["ce_type"],
            source=h["ce_source"],
            time=time,
            topic=msg.topic,
            key=msg.key,
            payload=msg.value,
            correlation_id=h.get("correlation_id"),
            traceparent=h.get("traceparent"),
            extra={k: v for k, v in h.items() if k not in known | {"correlation_id", "traceparent"}},
        )


class MissingHeaders(ValueError):
    """A record without the CloudEvents headers every mart event carries."""
