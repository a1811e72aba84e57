"""Transactional outbox: events are rows written in the same transaction as the state change, and a relay
publishes them afterwards, in commit order, retrying with backoff while the broker is away.

A crash between commit and publish loses nothing: the row stays unpublished until a relay sends it.
A rolled-back transaction publishes nothing: its rows never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from datetime import timedelta

import structlog
from google.protobuf.message import Message
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common import contracts
from mart_common.bus.base import EventBus
from mart_common.clock import utcnow
from mart_common.db import Database
from mart_common.messaging import BusMessage, Envelope, outbox_table
from mart_common.observability import current_correlation_id, current_traceparent
from mart_common.tasks import stop_gracefully

log = structlog.get_logger(__name__)

OUTBOX_LAG = Gauge("mart_outbox_unpublished", "Outbox rows not yet published", ["service"])
OUTBOX_AGE = Gauge("mart_outbox_oldest_unpublished_seconds", "Age of the oldest unpublished row", ["service"])
OUTBOX_PUBLISHED = Counter("mart_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_ERRORS = Counter("mart_outbox_publish_errors_total", "Failed publish attempts", ["service"])

_RELAY_LOCK_ID = 7425002


async def record_event(session: AsyncSession, message: Message, *, key: str, source: str) -> Envelope:
    """Add ``message`` to the outbox inside the caller's transaction; returns its envelope.

    The topic is the message's Protobuf package, the key its aggregate id (keeps per-aggregate order).
    The current correlation id and trace context travel with it.
    """
    envelope = Envelope.new(
        type=contracts.ce_type(message),
        source=source,
        topic=contracts.topic_for(message),
        key=key,
        payload=message.SerializeToString(),
        correlation_id=current_correlation_id(),
        traceparent=current_traceparent(),
    )
    await session.execute(
        outbox_table.insert().values(
            event_id=envelope.id,
            topic=envelope.topic,
            key=envelope.key,
            ce_type=envelope.type,
            payload=envelope.payload,
            headers=envelope.headers(),
            created_at=envelope.time,
            attempts=0,
        )
    )
    session.info["mart_outbox_pending"] = True
    return envelope


class OutboxRelay:
    """Publishes a service's outbox rows in order; one active relay per database at a time."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        service: str,
        batch_size: int = 200,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 5.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.retention = retention
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._crash_after_publish = _crash_after_publish_from_env()
        db.on_outbox_commit(self.notify)

    def notify(self) -> None:
        """Wake the relay (called after a commit that wrote to the outbox)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        """Finish the batch in hand (bounded), then stop."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await stop_gracefully([self._task])
            self._task = None

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        try:
            return await self._publish_batch()
        except _PublishFailed as failed:
            OUTBOX_ERRORS.labels(self.service).inc()
            async with self.db.transaction() as session:
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.seq.in_(failed.seqs))
                    .values(attempts=outbox_table.c.attempts + 1, last_error=str(failed.__cause__)[:1000])
                )
            raise failed.__cause__ from None  # type: ignore[misc]

    async def _publish_batch(self) -> int:
        async with self.db.transaction() as session:
            if self.db.is_postgres:
                # Replicas of a service share one outbox: only one relays at a time, keeping the order.
                got = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({_RELAY_LOCK_ID})"))
                if not got:
                    return 0
            rows = (
                await session.execute(
                    select(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                    .order_by(outbox_table.c.seq)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                return 0
            seqs = [r.seq for r in rows]
            messages = [
                BusMessage(
                    topic=r.topic,
                    key=r.key,
                    value=r.payload,
                    headers=tuple((k, str(v).encode()) for k, v in r.headers.items()),
                )
                for r in rows
            ]
            try:
                await self.bus.publish_many(messages)
            except Exception as exc:
                raise _PublishFailed(seqs) from exc
            self._fault_point_published_not_marked()
            await session.execute(
                update(outbox_table).where(outbox_table.c.seq.in_(seqs)).values(published_at=utcnow())
            )
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def unpublished(self) -> tuple[int, float]:
        """How many rows wait, and the age in seconds of the oldest one."""
        async with self.db.session() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(outbox_table.c.created_at)).where(
                        outbox_table.c.published_at.is_(None)
                    )
                )
            ).one()
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=utcnow().tzinfo)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        return int(count), age

    async def purge_published(self) -> int:
        """Delete rows published longer ago than the retention period."""
        cutoff = utcnow() - self.retention
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(outbox_table).where(
                    and_(outbox_table.c.published_at.is_not(None), outbox_table.c.published_at < cutoff)
                )
            )
        return int(result.rowcount or 0)

    async def _run(self) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        next_stats = 0.0
        next_purge = loop.time() + 60
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.publish_pending()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_publish_failed", service=self.service, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)  # at most 5 s: within the stop grace period
                backoff = min(self.max_backoff_s, backoff * 2)
                continue
            now = loop.time()
            if now >= next_stats:
                with contextlib.suppress(Exception):
                    count, age = await self.unpublished()
                    OUTBOX_LAG.labels(self.service).set(count)
                    OUTBOX_AGE.labels(self.service).set(age)
                next_stats = now + 2.0
            if now >= next_purge:
                with contextlib.suppress(Exception):
                    await self.purge_published()
                next_purge = now + 3600
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    def _fault_point_published_not_marked(self) -> None:
        """Fault injection for the fault suite (docs/reliability.md), OFF unless the environment sets it.

        Contract: ``MART_FAULT_RELAY_CRASH_AFTER_PUBLISH=<n>`` (a positive integer, read once when the relay
        is constructed) makes the process exit at once — ``os._exit(86)``, no cleanup, like ``kill -9`` —
        right after the n-th batch this relay published to the bus and BEFORE the UPDATE that marks those
        rows published (so that transaction never commits). One line
        ``fault_injected relay_crash_after_publish service=<service>`` goes to stderr first. Unset, empty,
        0 or not an integer: never fires. On restart the rows are still unpublished, the next relay
        publishes them again, and the consumers' inboxes must absorb the duplicates.
        """
        if self._crash_after_publish <= 0:
            return
        self._crash_after_publish -= 1
        if self._crash_after_publish == 0:
            sys.stderr.write(f"fault_injected relay_crash_after_publish service={self.service}\n")
            sys.stderr.flush()
            os._exit(86)


def _crash_after_publish_from_env() -> int:
    try:
        return max(0, int(os.environ.get("MART_FAULT_RELAY_CRASH_AFTER_PUBLISH", "") or 0))
    except ValueError:
        return 0


class _PublishFailed(Exception):
    def __init__(self, seqs: list[int]) -> None:
        super().__init__(f"publishing {len(seqs)} outbox rows failed")
        self.seqs = seqs
