"""Inbox-backed subscriptions: each event's id is recorded in the same transaction as the handler's
effects, so a redelivered event changes nothing.

A service declares its handlers as a table ``{MessageClass: handler}``; :class:`Subscriber` decodes the
record, checks the inbox, and runs the handler inside one transaction.

What a subscriber does with a record it cannot apply (docs/events.md, "Records a consumer cannot apply"):

- a ``ce_type`` it has no handler for, known to this build's contracts or not (a newer producer's new
  event type during a rolling deploy): skipped, counted in ``mart_consumer_events_skipped_total``;
- no CloudEvents headers, or a type it handles whose payload does not decode: dead-lettered at once;
- a handler that raises: retried, then dead-lettered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from google.protobuf.message import Message
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common import contracts
from mart_common.bus.base import EventBus, PermanentError
from mart_common.clock import utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.faults import CONSUMER_CRASH_AFTER_COMMIT, CrashPoint
from mart_common.messaging import BusMessage, Envelope, MissingHeaders, inbox_table
from mart_common.observability.tracing import event_context

log = structlog.get_logger(__name__)

# ``handler(context, session, event, envelope)``: the service's typed context (ServiceDefinition.context),
# a session inside the inbox transaction (the handler never commits), the decoded event, its envelope.
EventHandler = Callable[[Any, AsyncSession, Any, Envelope], Awaitable[None]]

SKIPPED = Counter(
    "mart_consumer_events_skipped_total",
    "Records a consumer group passed over because it has no handler for their ce_type"
    " (known=false: a type this build's contracts do not list, e.g. from a newer producer)",
    ["group", "ce_type", "known"],
)


class Subscriber:
    """Runs a service's event handlers as one consumer group, exactly once in effect."""

    def __init__(
        self,
        group: str,
        db: Database,
        handlers: Mapping[type[Message], EventHandler],
        *,
        batches: bool = True,
        collect_ms: int = 0,
    ) -> None:
        self.group = group
        self.db = db
        # How long the bus may hold a new record to deliver it with the ones arriving meanwhile (one batch,
        # one transaction); for subscribers off the saga's path. 0: at once.
        self.collect_ms = collect_ms
        # Several records of a poll in one transaction (handle_batch). Off for services whose handlers
        # lock rows that other partitions' events lock too, in no fixed order (inventory's stock rows): a
        # transaction covering several orders could deadlock with another partition's.
        self.batches = batches
        self.handlers = {contracts.ce_type(cls): fn for cls, fn in handlers.items()}
        self.context: Any = None  # the service's context, set by the runtime before it attaches
        self.topics = sorted({contracts.topic_for(cls) for cls in handlers})
        self._unknown_seen: set[str] = set()  # unknown types already logged (once each)
        # The fault suite's crash between the handler's commit and the offset's (mart_common.faults).
        self._crash_after_commit = CrashPoint(CONSUMER_CRASH_AFTER_COMMIT, "consumer_crash_after_commit", 87)

    def attach(self, bus: EventBus) -> None:
        if self.topics:
            bus.subscribe(self.group, self.topics, self)

    async def __call__(self, msg: BusMessage) -> None:
        try:
            envelope = Envelope.from_bus(msg)
        except MissingHeaders as exc:
            raise PermanentError(str(exc)) from exc
        handler = self.handlers.get(envelope.type)
        if handler is None:
            self._skipped(envelope)
            return
        try:
            event = contracts.decode(envelope.type, envelope.payload)
        except contracts.MalformedEvent as exc:
            raise PermanentError(f"malformed {envelope.type}: {exc}") from exc
        # A failure while the service's own database is unreachable is not the event's fault: wait for the
        # database instead of spending the bus's retries (which would dead-letter a good event during a short
        # outage). With the database up, the error goes to the bus as usual.
        await self.db.retry_while_unreachable(
            lambda: self._apply(envelope, handler, event), what=f"{self.group} event {envelope.id}"
        )
        self._crash_after_commit.passed(group=self.group, event_id=envelope.id)

    async def handle_batch(self, msgs: Sequence[BusMessage]) -> None:
        """Apply several records (each partition's in order) in ONE transaction, each with its inbox row.

        Anything unusual (a record that cannot be decoded, a handler error) raises before the commit, so
        nothing of the batch is applied and the bus delivers the records one by one instead (with their
        own retries and dead-lettering). Records of events this service does not handle are skipped.
        """
        work: list[tuple[Envelope, EventHandler, Message]] = []
        skipped: list[Envelope] = []
        for msg in msgs:
            envelope = Envelope.from_bus(msg)
            handler = self.handlers.get(envelope.type)
            if handler is None:
                skipped.append(envelope)
                continue
            work.append((envelope, handler, contracts.decode(envelope.type, envelope.payload)))
        if work:
            async with self.db.transaction() as session:
                for envelope, handler, event in work:
                    with event_context(envelope, self.group):
                        await self._apply_in(session, envelope, handler, event)
            for envelope, _handler, _event in work:
                self._crash_after_commit.passed(group=self.group, event_id=envelope.id)
        for envelope in skipped:  # counted once the batch is through (a failed batch is delivered again)
            self._skipped(envelope)

    def _skipped(self, envelope: Envelope) -> None:
        """A record of a type this group has no handler for: passed over, counted; an unknown type (not in
        this build's contracts: a newer producer's) is logged once per type."""
        try:
            contracts.message_class(envelope.type)
            known = True
        except contracts.UnknownEventType:
            known = False
        SKIPPED.labels(self.group, envelope.type[:200], "true" if known else "false").inc()
        if not known and envelope.type not in self._unknown_seen:
            self._unknown_seen.add(envelope.type)
            log.warning("unknown_event_type_skipped", group=self.group, ce_type=envelope.type[:200])

    async def _apply(self, envelope: Envelope, handler: EventHandler, event: Message) -> None:
        with event_context(envelope, self.group):
            async with self.db.transaction() as session:
                await self._apply_in(session, envelope, handler, event)

    async def _apply_in(
        self, session: AsyncSession, envelope: Envelope, handler: EventHandler, event: Message
    ) -> None:
        first = await insert_ignoring_duplicates(
            session,
            inbox_table,
            {
                "consumer": self.group,
                "event_id": envelope.id,
                "ce_type": envelope.type,
                "topic": envelope.topic,
                "processed_at": utcnow(),
            },
        )
        if not first:
            log.info("duplicate_event_ignored", group=self.group, event_id=envelope.id)
            return
        await handler(self.context, session, event, envelope)
