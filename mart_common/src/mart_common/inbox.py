"""Inbox-backed subscriptions: each event's id is recorded in the same transaction as the handler's
effects, so a redelivered event changes nothing.

A service declares its handlers as a table ``{MessageClass: handler}``; :class:`Subscriber` decodes the
record, checks the inbox, and runs the handler inside one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common import contracts
from mart_common.bus.base import EventBus, PermanentError
from mart_common.clock import utcnow
from mart_common.db import Database, insert_ignoring_duplicates
from mart_common.messaging import BusMessage, Envelope, MissingHeaders, inbox_table
from mart_common.observability.tracing import event_context

log = structlog.get_logger(__name__)

# ``handler(context, session, event, envelope)``: the service's typed context (ServiceDefinition.context),
# a session inside the inbox transaction (the handler never commits), the decoded event, its envelope.
EventHandler = Callable[[Any, AsyncSession, Any, Envelope], Awaitable[None]]


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
            try:
                contracts.message_class(envelope.type)
            except contracts.UnknownEventType as exc:
                raise PermanentError(f"unknown event type {envelope.type!r}") from exc
            return  # A known event this service does not care about.
        try:
            event = contracts.decode(envelope.type, envelope.payload)
        except contracts.MalformedEvent as exc:
            raise PermanentError(f"malformed {envelope.type}: {exc}") from exc
        while True:
            try:
                await self._apply(envelope, handler, event)
                return
            except Exception:
                # A failure while the service's own database is unreachable is not the event's fault: wait
                # for the database instead of spending the bus's retries (which would dead-letter a good
                # event during a short outage). With the database up, the error goes to the bus as usual.
                if await self.db.ping():
                    raise
                log.warning("database_unreachable_waiting", group=self.group, event_id=envelope.id)
                delay = 0.5
                while not await self.db.ping():
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def handle_batch(self, msgs: Sequence[BusMessage]) -> None:
        """Apply several records (each partition's in order) in ONE transaction, each with its inbox row.

        Anything unusual (a record that cannot be decoded, a handler error) raises before the commit, so
        nothing of the batch is applied and the bus delivers the records one by one instead (with their
        own retries and dead-lettering). Records of events this service does not handle are skipped.
        """
        work: list[tuple[Envelope, EventHandler, Message]] = []
        for msg in msgs:
            envelope = Envelope.from_bus(msg)
            handler = self.handlers.get(envelope.type)
            if handler is None:
                contracts.message_class(envelope.type)  # unknown types: the one-by-one path dead-letters
                continue
            work.append((envelope, handler, contracts.decode(envelope.type, envelope.payload)))
        if not work:
            return
        async with self.db.transaction() as session:
            for envelope, handler, event in work:
                with event_context(envelope, self.group):
                    await self._apply_in(session, envelope, handler, event)

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
