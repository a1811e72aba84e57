"""The Kafka adapter (aiokafka): idempotent producer with acks=all, consumer groups that commit offsets
only after the handler's transaction, bounded retries and a dead-letter topic per group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    TopicAlreadyExistsError,
)

from mart_common.bus.base import EventBus, Handler, RetryPolicy, collect_window_s, dead_letter_topic
from mart_common.bus.browse import EventTail, TopicInfo, group_lags
from mart_common.messaging import BusMessage
from mart_common.polling import wait_until
from mart_common.tasks import stop_gracefully

log = structlog.get_logger(__name__)

# Records of one partition handed to a batch-capable handler at once (one transaction for them all).
_BATCH = 50

# A collecting group's fetches (collect_window_s): the broker answers when this much is waiting or when the
# window has passed, whichever comes first; in practice the window.
_COLLECT_MIN_BYTES = 1 << 20

# Errors after which an idempotent producer is unusable until replaced.
_PRODUCER_STATE_ERRORS = (
    OutOfOrderSequenceNumber,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
    ProducerClosed,
)


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Make ``consumer`` fetch the cluster's metadata now.

    A consumer that *assigns* itself partitions (no group subscription) learns of topics and partitions only
    on its metadata interval (``metadata_max_age_ms``): right after a topic was created (by
    ``ensure_topics``, another process, a test) ``partitions_for_topic`` answers ``None`` and the consumer
    would read nothing. aiokafka has no public call for this; its client's ``force_metadata_update`` is
    private (checked against the locked aiokafka 0.14), so it is called here and nowhere else: an upgrade
    that changes it breaks in one place.
    """
    await consumer._client.force_metadata_update()


#: How long a reader waits for the broker to list a topic that exists (created a moment ago).
TOPIC_LISTED_TIMEOUT_S = 30.0


async def partitions_of(
    consumer: AIOKafkaConsumer, topics: Sequence[str], *, timeout_s: float = TOPIC_LISTED_TIMEOUT_S
) -> list[TopicPartition]:
    """Every partition of ``topics`` (physical names of topics that exist), once the consumer's metadata lists
    each of them.

    Right after a topic is created (by ``ensure_topics``, another process, a test) the broker answers a
    metadata request for it with ``LEADER_NOT_AVAILABLE`` or ``UNKNOWN_TOPIC_OR_PARTITION`` for a moment, and
    aiokafka then leaves the whole topic out of its metadata. A reader that assigned itself what the metadata
    listed at that moment would never read that topic; so the metadata is fetched again until every topic is
    there (``TimeoutError`` after ``timeout_s``)."""

    async def listed() -> dict[str, set[int] | None]:
        await refresh_metadata(consumer)
        return {t: consumer.partitions_for_topic(t) for t in topics}

    found = await wait_until(
        listed,
        until=lambda parts: all(parts.values()),
        timeout=timeout_s,
        interval=0.1,
        what=f"the broker to list {', '.join(topics)}",
    )
    return [TopicPartition(t, p) for t in topics for p in sorted(found[t] or ())]


PRODUCER_SETTINGS: dict[str, Any] = {"enable_idempotence": True, "acks": "all", "linger_ms": 0}
"""Every event is durably stored once published (idempotent, all in-sync replicas), sent at once: no linger.
The relay already hands the producer everything one wake-up publishes before the sender runs, so a linger
batched nothing more and only added its 2 ms to every hop of the saga
(docs/adr/0035-no-producer-linger.md)."""


def _to_message(record: object, namespace: str = "") -> BusMessage:
    return BusMessage(
        topic=record.topic.removeprefix(namespace),  # type: ignore[attr-defined]
        key=(record.key or b"").decode("utf-8", "replace"),  # type: ignore[attr-defined]
        value=record.value or b"",  # type: ignore[attr-defined]
        headers=tuple(record.headers or ()),  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
    )


class KafkaBus(EventBus):
    """Event bus on an Apache Kafka cluster."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 3,
        retry: RetryPolicy | None = None,
        client_id: str = "online-mart",
        namespace: str = "",
        commit_interval_s: float = 0.5,
    ) -> None:
        super().__init__(retry)
        # Prefixes topics and groups (isolated test runs on one broker); empty in real deployments.
        self.namespace = namespace
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        # How long a handled record's offset may stay uncommitted (redelivered after a crash, harmlessly).
        self.commit_interval_s = commit_interval_s
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._subscriptions: list[tuple[str, tuple[str, ...], Handler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._known_topics: set[str] = set()
        self._started = False
        self._producer_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        self._producer = await self._new_producer()
        self._started = True
        for group, topics, handler in self._subscriptions:
            self._spawn(group, topics, handler)

    async def stop(self) -> None:
        self._started = False
        await stop_gracefully(self._tasks)
        self._tasks.clear()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the configured partition count (idempotent)."""
        wanted = [self.namespace + t for t in topics if self.namespace + t not in self._known_topics]
        if not wanted:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(t, num_partitions=self.partitions, replication_factor=1) for t in missing]
                    )
            self._known_topics.update(wanted)
        finally:
            await admin.close()

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(3):
                await self._producer.client.fetch_all_metadata()
            return True
        except Exception:
            return False

    async def publish_many(self, messages: Sequence[BusMessage]) -> None:
        if self._producer is None:
            raise KafkaError("producer not started")
        await self.ensure_topics(sorted({m.topic for m in messages}))
        producer = self._producer
        try:
            futures = []
            for msg in messages:
                futures.append(
                    await producer.send(
                        self.namespace + msg.topic,
                        value=msg.value,
                        key=msg.key.encode(),
                        headers=list(msg.headers),
                    )
                )
            # Sends are pipelined; the idempotent producer keeps their order per partition.
            await asyncio.gather(*futures)
        except _PRODUCER_STATE_ERRORS as exc:
            # The idempotent producer's state no longer matches the broker's (typically after a broker
            # restart: OutOfOrderSequenceNumber on every later send). It never recovers by itself: start a
            # new producer (new producer id); the caller retries the batch (the outbox relay does).
            log.warning("kafka_producer_reset", error=repr(exc))
            await self._reset_producer(producer)
            raise

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            request_timeout_ms=15000,
            **PRODUCER_SETTINGS,
        )
        await producer.start()
        return producer

    async def _reset_producer(self, broken: AIOKafkaProducer) -> None:
        async with self._producer_lock:
            if self._producer is not broken or not self._started:
                return  # another publisher replaced it already
            with contextlib.suppress(Exception):
                await broken.stop()
            self._producer = await self._new_producer()

    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        self._subscriptions.append((group, tuple(topics), handler))
        if self._started:
            self._spawn(group, tuple(topics), handler)

    def _spawn(self, group: str, topics: tuple[str, ...], handler: Handler) -> None:
        self._tasks.append(asyncio.create_task(self._run_group(group, topics, handler)))

    def _consumer(self, group: str | None, *topics: str, collect_s: float = 0.0) -> AIOKafkaConsumer:
        # A collecting group lets the broker hold its fetch for the window (fetch_min_bytes unmet) so a
        # poll brings what arrived meanwhile; otherwise a fetch returns as soon as one record is there.
        fetch = (
            {"fetch_max_wait_ms": int(collect_s * 1000), "fetch_min_bytes": _COLLECT_MIN_BYTES}
            if collect_s
            else {}
        )
        return AIOKafkaConsumer(
            *(self.namespace + t for t in topics),
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=None if group is None else self.namespace + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
            metadata_max_age_ms=5000,
            # Replicas of a service share its group (docs/scaling.md,
            # docs/adr/0060-round-robin-assignor.md): the round robin assignor, whose member metadata never
            # changes, so a member that joins again with it cannot start another rebalance; a dead replica
            # is noticed within the 6 s session (the broker's minimum) instead of 10 s; a rebalance waits
            # for a slow member at most as long (rebalance timeout = session timeout;
            # docs/adr/0037-sticky-assignor-short-session.md).
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
            session_timeout_ms=6000,
            heartbeat_interval_ms=1500,
            **fetch,
        )

    async def _run_group(self, group: str, topics: tuple[str, ...], handler: Handler) -> None:
        loop = asyncio.get_running_loop()
        while self._started:
            consumer: AIOKafkaConsumer | None = None
            # Handled, not yet committed: the next offset per partition. Committed at most every
            # ``commit_interval_s`` (and before a rebalance takes the partitions, and when stopping), not
            # after every batch: a crash re-delivers at most that much, and the inbox absorbs it
            # (docs/adr/0033-offsets-committed-on-an-interval.md).
            pending: dict[TopicPartition, int] = {}
            try:
                await self.ensure_topics([*topics, dead_letter_topic(group)])
                consumer = self._consumer(group, collect_s=collect_window_s(handler))
                consumer.subscribe(
                    [self.namespace + t for t in topics], listener=_CommitOnRevoke(group, consumer, pending)
                )
                await consumer.start()
                due = loop.time() + self.commit_interval_s
                while self._started:
                    wait_s = max(0.0, due - loop.time()) if pending else 0.5
                    batches = await consumer.getmany(timeout_ms=int(wait_s * 1000))
                    if batches and not pending:
                        due = loop.time() + self.commit_interval_s
                    pending.update(await self._handle_poll(group, handler, batches))
                    if pending and loop.time() >= due:
                        await _commit(group, consumer, pending)
                await _commit(group, consumer, pending)  # stopping: what was handled is not re-read
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kafka_consumer_restart", group=group, error=str(exc))
                await asyncio.sleep(1.0)
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()

    async def _handle_poll(
        self, group: str, handler: Handler, batches: dict[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, int]:
        """Deliver what one poll returned; returns the offset to commit next per partition handled.

        A small poll spanning several partitions goes to a batching handler as ONE batch (one transaction
        for every partition's records, each partition's in order:
        docs/adr/0032-consumers-apply-a-poll-in-one-transaction.md). Otherwise, or when that batch fails,
        the partitions run side by side, records of one partition (one key) strictly in order.
        """
        if len(batches) > 1 and sum(len(recs) for recs in batches.values()) <= _BATCH:
            msgs = [_to_message(rec, self.namespace) for recs in batches.values() for rec in recs]
            if await self._deliver_batch(group, handler, msgs):
                return {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
        partitions = (self._handle_partition(group, handler, recs) for recs in batches.values())
        done = await asyncio.gather(*partitions)
        return {tp: n for tp, n in zip(batches, done, strict=True) if n is not None}

    async def _handle_partition(self, group: str, handler: Handler, recs: list[Any]) -> int | None:
        """Deliver one partition's records in order; returns the offset to commit next (None: none done)."""
        next_offset = None
        for start in range(0, len(recs), _BATCH):
            if not self._started:
                break  # stopping: the rest is re-read by the next consumer
            chunk = recs[start : start + _BATCH]
            await self._deliver_many(group, handler, [_to_message(rec, self.namespace) for rec in chunk])
            next_offset = chunk[-1].offset + 1
        return next_offset

    async def read_topic(self, topic: str) -> list[BusMessage]:
        await self.ensure_topics([topic])
        consumer = self._consumer(None)
        await consumer.start()
        try:
            tps = await partitions_of(consumer, [self.namespace + topic])
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[BusMessage] = []
            for tp in tps:
                while await consumer.position(tp) < end[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for rec in batch.get(tp, []):
                        if rec.offset < end[tp]:
                            out.append(_to_message(rec, self.namespace))
            return out
        finally:
            await consumer.stop()

    async def _drain(self, topic: str, group: str, fn: Handler) -> int:
        await self.ensure_topics([topic])
        consumer = self._consumer(group)
        await consumer.start()
        count = 0
        try:
            tps = await partitions_of(consumer, [self.namespace + topic])
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            for tp in tps:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
                while await consumer.position(tp) < end[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for rec in batch.get(tp, []):
                        if rec.offset >= end[tp]:
                            break
                        await fn(_to_message(rec, self.namespace))
                        await consumer.commit({tp: rec.offset + 1})
                        count += 1
            return count
        finally:
            await consumer.stop()

    # --- looking at the topics (mart events; mart_common.bus.browse) ------------------------------

    async def _physical_topics(self, admin: AIOKafkaAdminClient) -> list[str]:
        """This namespace's topics on the broker (Kafka's internal ``__*`` topics left out)."""
        names = await admin.list_topics()
        ns = self.namespace
        return sorted(t for t in names if t.startswith(ns) and not t.startswith("__") and t != ns)

    async def topics_overview(self) -> list[TopicInfo]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await admin.start()
        consumer = self._consumer(None)
        await consumer.start()
        try:
            physical = await self._physical_topics(admin)
            tps = await partitions_of(consumer, physical)
            starts = await consumer.beginning_offsets(tps) if tps else {}
            ends = await consumer.end_offsets(tps) if tps else {}
            committed: dict[str, dict[str, dict[int, int]]] = {}
            for group_id, *_ in await _retrying(admin.list_consumer_groups):
                if not group_id.startswith(self.namespace):
                    continue
                group = group_id.removeprefix(self.namespace)
                offsets = await _retrying(lambda g=group_id: admin.list_consumer_group_offsets(g))
                for tp, meta in offsets.items():
                    if meta.offset >= 0:
                        committed.setdefault(tp.topic, {}).setdefault(group, {})[tp.partition] = meta.offset
            out = []
            for topic in physical:
                topic_tps = [tp for tp in tps if tp.topic == topic]
                topic_ends = {tp.partition: ends[tp] for tp in topic_tps}
                topic_starts = {tp.partition: starts[tp] for tp in topic_tps}
                out.append(
                    TopicInfo(
                        topic=topic.removeprefix(self.namespace),
                        partitions=len(topic_tps),
                        # what the broker holds now (retention may have deleted older records)
                        messages=sum(topic_ends[p] - topic_starts[p] for p in topic_ends),
                        groups=group_lags(topic_ends, committed.get(topic, {}), topic_starts),
                    )
                )
            return out
        finally:
            await consumer.stop()
            await admin.close()

    def tail(
        self, topics: Sequence[str] | None = None, *, from_beginning: bool = False, follow: bool = True
    ) -> EventTail:
        return _KafkaTail(self, tuple(topics or ()), from_beginning=from_beginning, follow=follow)


class _KafkaTail(EventTail):
    """A group-less consumer assigned every partition of the topics (no offsets are committed)."""

    def __init__(self, bus: KafkaBus, topics: tuple[str, ...], *, from_beginning: bool, follow: bool):
        self.bus = bus
        self.topics = topics
        self.from_beginning = from_beginning
        self.follow = follow
        self._consumer: AIOKafkaConsumer | None = None
        self._stop_at: dict[TopicPartition, int] | None = None

    async def __aenter__(self) -> EventTail:
        bus = self.bus
        if self.topics:
            await bus.ensure_topics(self.topics)
            physical = [bus.namespace + t for t in self.topics]
        else:
            admin = AIOKafkaAdminClient(bootstrap_servers=bus.bootstrap_servers, client_id=bus.client_id)
            await admin.start()
            try:
                physical = await bus._physical_topics(admin)
            finally:
                await admin.close()
        consumer = bus._consumer(None)
        await consumer.start()
        self._consumer = consumer
        tps = await partitions_of(consumer, physical)
        consumer.assign(tps)
        if tps:
            if self.from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolve the reset now: later records are never skipped
        if not self.follow:
            self._stop_at = await consumer.end_offsets(tps) if tps else {}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def __aiter__(self) -> AsyncIterator[BusMessage]:
        consumer = self._consumer
        assert consumer is not None, "use `async with bus.tail(...) as tail`"
        while True:
            if self._stop_at is not None:
                pending = [tp for tp, end in self._stop_at.items() if await consumer.position(tp) < end]
                if not pending:
                    return
                batches = await consumer.getmany(*pending, timeout_ms=500)
            else:
                batches = await consumer.getmany(timeout_ms=500)
            for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
                for rec in batches[tp]:
                    if self._stop_at is not None and rec.offset >= self._stop_at[tp]:
                        break
                    yield _to_message(rec, self.bus.namespace)


async def _commit(group: str, consumer: AIOKafkaConsumer, pending: dict[TopicPartition, int]) -> None:
    """Commit the handled offsets in ``pending`` (then forget them)."""
    if not pending:
        return
    offsets = dict(pending)
    pending.clear()
    try:
        await consumer.commit(offsets)
    except CommitFailedError as exc:
        # A rebalance moved the partitions: the new owner re-reads, the inbox dedupes.
        log.warning("commit_failed_rebalance", group=group, error=str(exc))


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Before a rebalance takes partitions away, commit what was handled on them, so their next owner
    starts after it instead of re-reading it."""

    def __init__(self, group: str, consumer: AIOKafkaConsumer, pending: dict[TopicPartition, int]) -> None:
        self.group = group
        self.consumer = consumer
        self.pending = pending

    async def on_partitions_revoked(self, revoked: Any) -> None:
        mine = {tp: self.pending.pop(tp) for tp in list(self.pending) if tp in revoked}
        with contextlib.suppress(KafkaError):
            await _commit(self.group, self.consumer, mine)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _retrying(call: Any, attempts: int = 20) -> Any:
    """``await call()``, again while the broker says it is still loading its group metadata (a broker that
    has just started answers GroupLoadInProgress / CoordinatorNotAvailable for a few seconds)."""
    for attempt in range(attempts):
        try:
            return await call()
        except (GroupLoadInProgressError, GroupCoordinatorNotAvailableError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.25)
    return None
