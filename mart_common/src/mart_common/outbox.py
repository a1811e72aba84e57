"""Transactional outbox: events are rows written in the same transaction as the state change, and a relay
publishes them afterwards, in commit order, retrying with backoff while the broker is away.

A crash between commit and publish loses nothing: the row stays unpublished until a relay sends it.
A rolled-back transaction publishes nothing: its rows never existed (and are never handed over).

How the relay publishes (docs/adr/0004-transactional-outbox.md):

- **Fast path.** A committed transaction hands its rows to this process's relay in memory (the database's
  after-commit hook); the relay publishes them at once, with no query, and marks them published later in
  batches. It is taken only while this relay is the *sole* publisher of the database: the leader, with no
  other process holding the database's writer lock (a second replica turns it off within a second, and
  a joining replica waits longer than that before it writes). Per-key order then is commit order.
- **Sweep.** ``SELECT ... WHERE published_at IS NULL ORDER BY seq`` under a transaction-scoped advisory
  lock publishes whatever the fast path did not: rows left by a crash, rows written while the broker was
  away, and, while several replicas share the database, every row (each relay sweeps when its process
  commits and every ``poll_interval_s``; the lock keeps two sweeps from sending the same rows at once).
- Published-but-unmarked rows are re-published after a crash: consumers' inboxes absorb the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from google.protobuf.message import Message
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mart_common import contracts
from mart_common.bus.base import EventBus
from mart_common.clock import utcnow
from mart_common.db import Database
from mart_common.messaging import BusMessage, Envelope, outbox_table
from mart_common.observability.logs import current_correlation_id
from mart_common.observability.tracing import producer_traceparent
from mart_common.work import Handover, WorkLoop, hand_over

log = structlog.get_logger(__name__)

OUTBOX_LAG = Gauge("mart_outbox_unpublished", "Outbox rows not yet published", ["service"])
OUTBOX_AGE = Gauge("mart_outbox_oldest_unpublished_seconds", "Age of the oldest unpublished row", ["service"])
OUTBOX_PUBLISHED = Counter("mart_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_ERRORS = Counter("mart_outbox_publish_errors_total", "Failed publish attempts", ["service"])

# PostgreSQL advisory locks, per database. LEADER: session lock of the one relay that may take the fast path.
# WRITER: shared session lock of every running relay (the leader counts them). PUBLISH: transaction lock
# around every sweep, so two sweeps never publish the same rows at once.
_LEADER_LOCK = 7425002
_WRITER_LOCK = 7425003
_PUBLISH_LOCK = 7425004

_HANDOVER = "mart_outbox_rows"
_INSERT = outbox_table.insert()  # built once: values are bound per event

FAULT_CRASH_AFTER_PUBLISH = "MART_FAULT_RELAY_CRASH_AFTER_PUBLISH"
"""Fault injection for the fault suite (docs/reliability.md), OFF unless the environment sets it.

``MART_FAULT_RELAY_CRASH_AFTER_PUBLISH=<n>`` (a positive integer, read once when the relay is constructed)
makes the process exit at once (``os._exit(86)``, no cleanup, like ``kill -9``) right after the n-th batch
this relay published to the bus, fast path or sweep, and BEFORE those rows are marked published. One line
``fault_injected relay_crash_after_publish service=<service>`` goes to stderr first. Unset, empty, 0 or not
an integer: never fires. On restart the rows are still unpublished, the next relay publishes them again, and
the consumers' inboxes must absorb the duplicates.
"""


@dataclass(frozen=True, slots=True)
class _Row:
    event_id: str
    message: BusMessage


async def record_event(
    session: AsyncSession, message: Message, *, key: str, source: str | None = None
) -> Envelope:
    """Add ``message`` to the outbox inside the caller's transaction; returns its envelope.

    ``source`` (the CloudEvents source) defaults to the service whose database the session belongs to
    (``Database(event_source=settings.service_name)``).

    The topic is the message's Protobuf package, the key its aggregate id (keeps per-aggregate order).
    The current correlation id and trace context travel with it. Not inside a savepoint: a savepoint
    rolled back alone would take the row with it but not the in-memory hand-over.
    """
    if session.in_nested_transaction():
        raise RuntimeError("record events outside a savepoint (see mart_common.outbox.record_event)")
    source = source or session.info.get("event_source")
    if not source:
        raise RuntimeError("record_event: no source (create the Database with event_source=...)")
    envelope = Envelope.new(
        type=contracts.ce_type(message),
        source=source,
        topic=contracts.topic_for(message),
        key=key,
        payload=message.SerializeToString(),
        correlation_id=current_correlation_id(),
        traceparent=producer_traceparent(contracts.ce_type(message), contracts.topic_for(message)),
    )
    headers = envelope.headers()
    await session.execute(
        _INSERT,
        {
            "event_id": envelope.id,
            "topic": envelope.topic,
            "key": envelope.key,
            "ce_type": envelope.type,
            "payload": envelope.payload,
            "headers": headers,
            "created_at": envelope.time,
            "attempts": 0,
        },
    )
    row = _Row(envelope.id, _bus_message(envelope.topic, envelope.key, envelope.payload, headers))
    hand_over(session, _HANDOVER, row)
    return envelope


def _bus_message(topic: str, key: str, payload: bytes, headers: dict[str, Any]) -> BusMessage:
    return BusMessage(
        topic=topic, key=key, value=payload, headers=tuple((k, str(v).encode()) for k, v in headers.items())
    )


class OutboxRelay:
    """Publishes a service's outbox rows in order; one leader per database (see the module docstring)."""

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
        mark_interval_s: float = 1.0,
        role_check_interval_s: float = 1.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.retention = retention
        self.mark_interval_s = mark_interval_s
        self.role_check_interval_s = role_check_interval_s
        self._mutex = asyncio.Lock()  # one publisher at a time inside this process
        self._loop = WorkLoop(
            f"outbox-relay-{service}",
            self._round,
            in_hand=lambda: bool(self._handed),  # stopping: publish what was committed here first
            backoff_max_s=max_backoff_s,  # at most 5 s: within the stop's grace period
            on_failure=self._failed,
        )
        # committed here, not yet published (fast path): kept only while this relay runs and is alone
        self._handed: Handover[_Row] = Handover(
            db, _HANDOVER, self._loop.wake, accept=lambda: self._loop.running and self._exclusive
        )
        self._unmarked: list[str] = []  # published, published_at not yet written
        self._due: dict[str, float] | None = None  # loop time at which each periodic part is due next
        self._unmarked_since = 0.0
        # SQLite is one process's file: its relay is always the sole publisher.
        self._leader = self._exclusive = not db.is_postgres
        self._roles: AsyncConnection | None = None  # PostgreSQL: the connection holding the session locks
        self._crash_after_batches = _positive_int(os.environ.get(FAULT_CRASH_AFTER_PUBLISH))

    # --- lifecycle ---------------------------------------------------------------------------------

    async def join(self) -> None:
        """Take this process's place among the database's relays before the service writes anything.

        PostgreSQL: hold the shared writer lock and try to lead. A process that finds another leader
        waits until that leader has seen it (two role checks), so the leader's fast path is off before
        this process commits its first event.
        """
        if not self.db.is_postgres or self._roles is not None:
            return
        await self._check_roles()
        if not self._leader:
            await asyncio.sleep(2.5 * self.role_check_interval_s)

    def start(self) -> None:
        if not self._loop.running:
            self._due = None
        self._loop.start()

    async def stop(self) -> None:
        """Publish what is in hand and mark it (bounded), then stop."""
        await self._loop.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._flush_marks()
        await self._release_roles()

    # --- publishing --------------------------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Sweep: publish one batch of unpublished rows (in ``seq`` order) and mark them; returns how many.

        Rows this relay published on the fast path are marked first, so they are not sent again.
        """
        async with self._mutex:
            await self._flush_marks()
            try:
                return await self._sweep()
            except _PublishFailed as failed:
                OUTBOX_ERRORS.labels(self.service).inc()
                async with self.db.transaction() as session:
                    await session.execute(
                        update(outbox_table)
                        .where(outbox_table.c.seq.in_(failed.seqs))
                        .values(attempts=outbox_table.c.attempts + 1, last_error=str(failed.__cause__)[:1000])
                    )
                raise failed.__cause__ from None  # type: ignore[misc]

    async def _sweep(self) -> int:
        async with self.db.transaction() as session:
            if self.db.is_postgres:
                # Two sweeps (a leader and a process that just lost leadership) never publish together.
                got = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({_PUBLISH_LOCK})"))
                if not got:
                    return 0
            rows = (
                await session.execute(
                    select(
                        outbox_table.c.seq,
                        outbox_table.c.event_id,
                        outbox_table.c.topic,
                        outbox_table.c.key,
                        outbox_table.c.payload,
                        outbox_table.c.headers,
                    )
                    .where(outbox_table.c.published_at.is_(None))
                    .order_by(outbox_table.c.seq)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                return 0
            seqs = [r.seq for r in rows]
            try:
                await self.bus.publish_many(
                    [_bus_message(r.topic, r.key, r.payload, r.headers) for r in rows]
                )
            except Exception as exc:
                raise _PublishFailed(seqs) from exc
            self._published(len(rows))
            await session.execute(
                update(outbox_table).where(outbox_table.c.seq.in_(seqs)).values(published_at=utcnow())
            )
        swept = {r.event_id for r in rows}
        if self._handed:
            self._handed.items[:] = [row for row in self._handed.items if row.event_id not in swept]
        return len(rows)

    async def _publish_queue(self) -> None:
        """Fast path: publish what this process committed, in commit order; marked later in batches."""
        async with self._mutex:
            while self._handed:
                batch = self._handed.items[: self.batch_size]
                try:
                    await self.bus.publish_many([row.message for row in batch])
                except Exception:
                    OUTBOX_ERRORS.labels(self.service).inc()
                    raise
                del self._handed.items[: len(batch)]
                if not self._unmarked:
                    self._unmarked_since = asyncio.get_running_loop().time()
                self._unmarked.extend(row.event_id for row in batch)
                self._published(len(batch))

    def _published(self, n: int) -> None:
        OUTBOX_PUBLISHED.labels(self.service).inc(n)
        if self._crash_after_batches > 0:  # the fault point: published, not yet marked
            self._crash_after_batches -= 1
            if self._crash_after_batches == 0:
                sys.stderr.write(f"fault_injected relay_crash_after_publish service={self.service}\n")
                sys.stderr.flush()
                os._exit(86)

    async def _flush_marks(self) -> None:
        if not self._unmarked:
            return
        ids = list(self._unmarked)
        async with self.db.transaction() as session:
            for start in range(0, len(ids), 1000):
                await session.execute(
                    update(outbox_table)
                    .where(outbox_table.c.event_id.in_(ids[start : start + 1000]))
                    .values(published_at=utcnow())
                )
        del self._unmarked[: len(ids)]

    # --- roles (PostgreSQL) ------------------------------------------------------------------------

    async def _check_roles(self) -> None:
        """Hold the writer lock, try to lead, and count the writers: the fast path needs to be alone."""
        if self._roles is None:
            self._roles = await self.db.engine.connect()
            await self._roles.execution_options(isolation_level="AUTOCOMMIT")
            await self._roles.execute(text(f"SELECT pg_advisory_lock_shared({_WRITER_LOCK})"))
            self._leader = False
        row = (
            await self._roles.execute(
                text(
                    "SELECT CASE WHEN :leader THEN true ELSE pg_try_advisory_lock(:leader_lock) END, "
                    "(SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    " WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted "
                    " AND l.classid = 0 AND l.objid = :writer_lock AND l.objsubid = 1)"
                ),
                {"leader": self._leader, "leader_lock": _LEADER_LOCK, "writer_lock": _WRITER_LOCK},
            )
        ).one()
        was_exclusive = self._exclusive
        self._leader = bool(row[0])
        self._exclusive = self._leader and int(row[1]) == 1
        if was_exclusive and not self._exclusive:
            log.info("outbox_relay_shared", service=self.service, writers=int(row[1]), leader=self._leader)

    async def _release_roles(self) -> None:
        roles, self._roles = self._roles, None
        if roles is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await roles.close()  # ends the session: its advisory locks go with it
        if self.db.is_postgres:
            self._leader = self._exclusive = False

    async def _lost_roles(self) -> None:
        """The roles connection broke (database restart): drop it; the next check starts over."""
        if self._roles is not None:
            with contextlib.suppress(Exception):
                await self._roles.invalidate()
        self._roles = None
        self._leader = self._exclusive = False
        self._handed.take()  # the rows are in the table: the next leader's sweep publishes them

    # --- the loop ----------------------------------------------------------------------------------

    async def unpublished(self) -> tuple[int, float]:
        """How many rows wait, and the age in seconds of the oldest one."""
        async with self.db.read() as session:
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

    async def _round(self) -> float | None:
        """One round of the relay's loop: roles, sweep, fast path, marks, and now and then the lag figures
        and the purge. Returns the seconds until the next round (0: a full batch was swept, or rows are in
        hand)."""
        now = asyncio.get_running_loop().time()
        due = self._due
        if due is None:
            due = self._due = {"roles": 0.0, "sweep": 0.0, "stats": 0.0, "purge": now + 60}
        if self.db.is_postgres and now >= due["roles"]:
            due["roles"] = now + self.role_check_interval_s
            was_exclusive = self._exclusive
            try:
                await self._check_roles()
            except Exception:
                await self._lost_roles()
                raise
            if self._exclusive and not was_exclusive:
                due["sweep"] = now  # drain what others left before publishing from memory
        full = False
        # Shared with other replicas, every wake-up sweeps (whoever holds the publish lock sends the rows,
        # in seq order). Alone, the sweep only looks for leftovers now and then.
        if not self._exclusive or now >= due["sweep"]:
            swept = await self.publish_pending()
            full = swept >= self.batch_size
            if not full:
                due["sweep"] = now + max(2.0, self.poll_interval_s)
        if self._handed and (not self._exclusive or len(self._handed) > 20 * self.batch_size):
            # No longer alone, or the broker has been away for long: the rows are in the table, and the
            # sweep publishes them in seq order.
            self._handed.take()
        if self._handed:
            await self._publish_queue()
        stopping = self._loop.stopping
        if self._unmarked and (
            stopping
            or len(self._unmarked) >= self.batch_size
            or now - self._unmarked_since >= self.mark_interval_s
        ):
            async with self._mutex:
                await self._flush_marks()
        if stopping:
            return 0 if self._handed else None
        if now >= due["stats"]:
            with contextlib.suppress(Exception):
                count, age = await self.unpublished()
                OUTBOX_LAG.labels(self.service).set(count)
                OUTBOX_AGE.labels(self.service).set(age)
            due["stats"] = now + 5.0
        if now >= due["purge"]:
            with contextlib.suppress(Exception):
                await self.purge_published()
            due["purge"] = now + 3600
        if full or self._handed:
            return 0
        timeout = self.poll_interval_s
        if self._unmarked:
            timeout = min(timeout, max(0.0, self._unmarked_since + self.mark_interval_s - now))
        return timeout

    def _failed(self, exc: Exception, retry_in: float) -> None:
        log.warning("outbox_publish_failed", service=self.service, error=str(exc), retry_in=retry_in)


def _positive_int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


class _PublishFailed(Exception):
    def __init__(self, seqs: list[int]) -> None:
        super().__init__(f"publishing {len(seqs)} outbox rows failed")
        self.seqs = seqs
