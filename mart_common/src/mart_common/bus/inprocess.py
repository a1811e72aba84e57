"""The in-process adapter: a durable, partitioned log in one SQLite file, for the embedded mode.

It keeps Kafka's semantics so the same handlers and tests run on both: records are appended to a
partition chosen by key, each consumer group keeps its own committed offset per partition, and a
restarted process resumes where each group left off (no event is lost with the process).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Sequence

import structlog
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    select,
)

from mart_common.bus.base import EventBus, Handler, RetryPolicy, collect_window_s
from mart_common.bus.browse import EventTail, TopicInfo, group_lags
from mart_common.clock import utcnow
from mart_common.db import Database, upsert
from mart_common.messaging import BusMessage
from mart_common.tasks import stop_gracefully

log = structlog.get_logger(__name__)

BUS_METADATA = MetaData()

records = Table(
    "bus_records",
    BUS_METADATA,
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", Integer, primary_key=True),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

offsets = Table(
    "bus_offsets",
    BUS_METADATA,
    Column("group", String(200), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", Integer, nullable=False),
)


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes (unlike ``hash``), so a key always lands on the same partition."""
    return zlib.crc32(key.encode()) % partitions


class InProcessBus(EventBus):
    """Event bus inside one process, persisted in SQLite."""

    def __init__(self, url: str, *, partitions: int = 3, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry)
        self.url = url
        self.partitions = partitions
        self.db = Database(url)
        self._started = False
        self._subscriptions: list[tuple[str, tuple[str, ...], Handler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeups: list[asyncio.Event] = []
        self._write_lock = asyncio.Lock()
        # Hints that spare the consumers a query per empty partition: the last offset written per
        # (topic, partition) by this process, and each group's committed position (this process is the
        # only one that consumes as that group). A periodic full scan covers writes by other processes.
        self._heads: dict[tuple[str, int], int] = {}
        self._positions: dict[tuple[str, str, int], int] = {}

    async def start(self) -> None:
        if self._started:
            return
        await self.db.create_all([BUS_METADATA])
        async with self.db.session() as session:
            rows = await session.execute(
                select(records.c.topic, records.c.partition, func.max(records.c.offset)).group_by(
                    records.c.topic, records.c.partition
                )
            )
            self._heads = {(t, p): o for t, p, o in rows}
        self._started = True
        for group, topics, handler in self._subscriptions:
            self._spawn(group, topics, handler)

    async def stop(self) -> None:
        self._started = False
        for wake in self._wakeups:
            wake.set()
        await stop_gracefully(self._tasks)
        self._tasks.clear()
        self._wakeups.clear()
        await self.db.dispose()

    async def ping(self) -> bool:
        return self._started and await self.db.ping()

    async def publish_many(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        # One writer at a time inside the process keeps offsets dense and ordered.
        async with self._write_lock, self.db.transaction() as session:
            heads: dict[tuple[str, int], int] = {}
            rows = []
            now = utcnow()
            for msg in messages:
                part = partition_for(msg.key, self.partitions)
                tp = (msg.topic, part)
                if tp not in heads:
                    # The file's own head, not the hint: another process (a CLI command) may append too.
                    current = await session.scalar(
                        select(func.max(records.c.offset)).where(
                            records.c.topic == msg.topic, records.c.partition == part
                        )
                    )
                    heads[tp] = -1 if current is None else current
                heads[tp] += 1
                rows.append(
                    {
                        "topic": msg.topic,
                        "partition": part,
                        "offset": heads[tp],
                        "key": msg.key,
                        "value": msg.value,
                        "headers": [[k, v.decode("utf-8", "replace")] for k, v in msg.headers],
                        "created_at": now,
                    }
                )
            await session.execute(records.insert(), rows)  # one executemany for the batch
        for tp, head in heads.items():
            self._heads[tp] = max(self._heads.get(tp, -1), head)
        for event in self._wakeups:
            event.set()

    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        self._subscriptions.append((group, tuple(topics), handler))
        if self._started:
            self._spawn(group, tuple(topics), handler)

    def _spawn(self, group: str, topics: tuple[str, ...], handler: Handler) -> None:
        wake = asyncio.Event()
        self._wakeups.append(wake)
        self._tasks.append(asyncio.create_task(self._run_group(group, topics, handler, wake)))

    async def _run_group(
        self, group: str, topics: tuple[str, ...], handler: Handler, wake: asyncio.Event
    ) -> None:
        full_scan = True
        window = collect_window_s(handler)
        while self._started:
            wake.clear()
            try:
                handled = 0
                for topic in topics:
                    for part in range(self.partitions):
                        position = await self._committed(group, topic, part)
                        if not full_scan and self._heads.get((topic, part), -1) < position:
                            continue  # nothing new there
                        handled += await self._consume_partition(group, topic, part, handler)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inprocess_consumer_error", group=group)
                await asyncio.sleep(0.5)
                continue
            full_scan = False
            if not handled:
                try:
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
                except TimeoutError:
                    full_scan = True  # quiet for a second: look everywhere (other processes' writes)
                    continue
            if window:
                # a collecting group (off the saga's path): let what arrives meanwhile join the next batch,
                # as the Kafka adapter's fetch waits for its window. After a batch too: one read per window
                # under load is what makes its batches large (a backlog still drains 50 records per
                # partition per window); sleeping only when woken from idle measured fewer orders/s.
                await asyncio.sleep(window)

    async def _committed(self, group: str, topic: str, part: int) -> int:
        cached = self._positions.get((group, topic, part))
        if cached is not None:
            return cached
        async with self.db.read() as session:
            value = await session.scalar(
                select(offsets.c.next_offset).where(
                    offsets.c.group == group, offsets.c.topic == topic, offsets.c.partition == part
                )
            )
        self._positions[(group, topic, part)] = value or 0
        return value or 0

    async def _commit(self, group: str, topic: str, part: int, next_offset: int) -> None:
        async with self.db.transaction() as session:
            await upsert(
                session,
                offsets,
                {"group": group, "topic": topic, "partition": part, "next_offset": next_offset},
                keys=("group", "topic", "partition"),
            )
        self._positions[(group, topic, part)] = next_offset

    async def _fetch(self, topic: str, part: int, start: int, limit: int = 100) -> list[BusMessage]:
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(records)
                    .where(records.c.topic == topic, records.c.partition == part, records.c.offset >= start)
                    .order_by(records.c.offset)
                    .limit(limit)
                )
            ).all()
        return [
            BusMessage(
                topic=r.topic,
                key=r.key,
                value=r.value,
                headers=tuple((k, v.encode()) for k, v in r.headers),
                partition=r.partition,
                offset=r.offset,
            )
            for r in rows
        ]

    async def _consume_partition(self, group: str, topic: str, part: int, handler: Handler) -> int:
        start = await self._committed(group, topic, part)
        batch = await self._fetch(topic, part, start, limit=50)
        if batch and self._started:
            # One position commit per batch, as the Kafka adapter commits per poll: a crash re-delivers
            # the batch, and the consumers' inboxes absorb what was already applied.
            await self._deliver_many(group, handler, batch)
            await self._commit(group, topic, part, (batch[-1].offset or 0) + 1)
        return len(batch)

    async def read_topic(self, topic: str) -> list[BusMessage]:
        out: list[BusMessage] = []
        for part in range(self.partitions):
            start = 0
            while batch := await self._fetch(topic, part, start, limit=1000):
                out.extend(batch)
                start = (batch[-1].offset or 0) + 1
        return out

    async def _drain(self, topic: str, group: str, fn: Handler) -> int:
        count = 0
        for part in range(self.partitions):
            # Up to the end as it is NOW (like the Kafka adapter): records appended while draining (e.g. a
            # re-driven poison record dead-lettered again) wait for the next drain instead of looping.
            async with self.db.session() as session:
                end = await session.scalar(
                    select(func.max(records.c.offset)).where(
                        records.c.topic == topic, records.c.partition == part
                    )
                )
            if end is None:
                continue
            while batch := await self._fetch(topic, part, await self._committed(group, topic, part)):
                batch = [m for m in batch if (m.offset or 0) <= end]
                if not batch:
                    break
                for msg in batch:
                    await fn(msg)
                    await self._commit(group, topic, part, (msg.offset or 0) + 1)
                    count += 1
        return count

    # --- looking at the log (mart events; mart_common.bus.browse) ---------------------------------

    async def topics_overview(self) -> list[TopicInfo]:
        async with self.db.session() as session:
            heads = (
                await session.execute(
                    select(records.c.topic, records.c.partition, func.max(records.c.offset)).group_by(
                        records.c.topic, records.c.partition
                    )
                )
            ).all()
            positions = (
                await session.execute(
                    select(offsets.c.group, offsets.c.topic, offsets.c.partition, offsets.c.next_offset)
                )
            ).all()
        ends: dict[str, dict[int, int]] = {}
        for topic, part, head in heads:
            ends.setdefault(topic, {})[part] = head + 1
        committed: dict[str, dict[str, dict[int, int]]] = {}
        for group, topic, part, next_offset in positions:
            committed.setdefault(topic, {}).setdefault(group, {})[part] = next_offset
        out = []
        for topic in sorted(set(ends) | set(committed)):
            topic_ends = {p: ends.get(topic, {}).get(p, 0) for p in range(self.partitions)}
            topic_ends.update(ends.get(topic, {}))
            out.append(
                TopicInfo(
                    topic=topic,
                    partitions=len(topic_ends),
                    messages=sum(topic_ends.values()),  # offsets are dense from 0: nothing is deleted
                    groups=group_lags(topic_ends, committed.get(topic, {})),
                )
            )
        return out

    def tail(
        self,
        topics: Sequence[str] | None = None,
        *,
        from_beginning: bool = False,
        follow: bool = True,
        poll_s: float = 0.25,
    ) -> EventTail:
        """``poll_s``: how often a following tail looks for new records (the writer may be another
        process, so there is nothing to wake it)."""
        return _InProcessTail(
            self, tuple(topics or ()), from_beginning=from_beginning, follow=follow, poll_s=poll_s
        )


class _InProcessTail(EventTail):
    """Polls the SQLite log (the writer may be another process: the embedded mart)."""

    def __init__(
        self,
        bus: InProcessBus,
        topics: tuple[str, ...],
        *,
        from_beginning: bool,
        follow: bool,
        poll_s: float,
    ) -> None:
        self.bus = bus
        self.poll_s = poll_s
        self.topics = topics
        self.from_beginning = from_beginning
        self.follow = follow
        self._next: dict[tuple[str, int], int] = {}
        self._stop_at: dict[tuple[str, int], int] | None = None

    async def _heads(self) -> dict[tuple[str, int], int]:
        query = select(records.c.topic, records.c.partition, func.max(records.c.offset)).group_by(
            records.c.topic, records.c.partition
        )
        if self.topics:
            query = query.where(records.c.topic.in_(self.topics))
        async with self.bus.db.session() as session:
            return {(t, p): o for t, p, o in await session.execute(query)}

    async def __aenter__(self) -> EventTail:
        await self.bus.db.create_all([BUS_METADATA])
        heads = await self._heads()
        self._next = {tp: 0 if self.from_beginning else head + 1 for tp, head in heads.items()}
        if not self.follow:
            self._stop_at = {tp: head + 1 for tp, head in heads.items()}
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None  # the bus owns its database

    async def __aiter__(self) -> AsyncIterator[BusMessage]:
        while True:
            if self._stop_at is not None:
                pending = [tp for tp, end in self._stop_at.items() if self._next.get(tp, 0) < end]
            elif self.topics:
                # named topics: every partition, read by key (no scan of the log for its heads); a
                # partition that appeared since entering starts at 0: its records are new
                pending = [(t, p) for t in self.topics for p in range(self.bus.partitions)]
            else:
                pending = list((await self._heads()).keys())
            got = 0
            for topic, part in sorted(pending):
                batch = await self.bus._fetch(topic, part, self._next.get((topic, part), 0), limit=500)
                for msg in batch:
                    if self._stop_at is not None and (msg.offset or 0) >= self._stop_at[(topic, part)]:
                        break
                    self._next[(topic, part)] = (msg.offset or 0) + 1
                    got += 1
                    yield msg
            if self._stop_at is not None and not pending:
                return
            if not got:
                await asyncio.sleep(self.poll_s)
