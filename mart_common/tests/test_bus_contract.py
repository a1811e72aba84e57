"""One contract, two adapters: the in-process bus (SQLite log) and the real Kafka broker behave alike.

Each test runs with the in-process bus on SQLite and with Kafka on the real PostgreSQL server, through the
real outbox relay and inbox subscriber.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from mart.orders.v1 import orders_pb2
from mart_common.bus.base import EventBus
from mart_common.db import Database
from mart_common.inbox import Subscriber
from mart_common.messaging import MESSAGING_METADATA, BusMessage, Envelope, outbox_table
from mart_common.outbox import OutboxRelay, record_event
from mart_testkit.fixtures import eventually
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common import outbox as outbox_module

TOPIC = "mart.orders.v1"
GROUP = "contract-consumer"

test_metadata = MetaData()
effects = Table(
    "effects",
    test_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("partition", Integer, nullable=True),
)


@dataclass
class Rig:
    db: Database
    bus: EventBus
    kind: str

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.db, self.bus, service="contract-producer", poll_interval_s=0.05)

    async def place(self, order_id: str, seq: int) -> None:
        async with self.db.transaction() as session:
            await record_event(
                session,
                orders_pb2.OrderPlaced(order_id=order_id, total_cents=seq, currency="USD"),
                key=order_id,
                source="contract-producer",
            )

    async def effects(self) -> list[tuple[str, int]]:
        async with self.db.session() as session:
            rows = (
                await session.execute(select(effects.c.order_id, effects.c.seq).order_by(effects.c.id))
            ).all()
        return [(r[0], r[1]) for r in rows]

    async def unpublished(self) -> int:
        async with self.db.session() as session:
            return await session.scalar(
                select(func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
            )


async def _record_effect(
    _context: object, session: AsyncSession, event: orders_pb2.OrderPlaced, env: Envelope
) -> None:
    await session.execute(effects.insert().values(order_id=event.order_id, seq=event.total_cents))


@pytest.fixture
async def rig(bus_kind: str, make_bus, new_database) -> AsyncIterator[Rig]:
    # The in-process adapter runs on SQLite (the embedded mode); Kafka with the real PostgreSQL server.
    url = await new_database("sqlite" if bus_kind == "inprocess" else "postgres")
    db = Database(url)
    await db.create_all([MESSAGING_METADATA, test_metadata])
    bus = make_bus(bus_kind)
    await bus.start()
    try:
        yield Rig(db, bus, bus_kind)
    finally:
        await bus.stop()
        await db.dispose()


def _subscribe(rig: Rig, handler=_record_effect) -> Subscriber:
    sub = Subscriber(GROUP, rig.db, {orders_pb2.OrderPlaced: handler})
    sub.attach(rig.bus)
    return sub


async def test_event_committed_then_relay_killed_is_still_delivered(rig: Rig) -> None:
    _subscribe(rig)

    # The relay dies between the commit and the publish: its publish never completes.
    class Crash(Exception):
        pass

    async def crashing_publish(messages):
        raise Crash("relay killed before publishing")

    real_publish = rig.bus.publish_many
    rig.bus.publish_many = crashing_publish  # type: ignore[method-assign]
    dying = rig.relay()
    await rig.place("order-1", 1)
    with pytest.raises(Crash):
        await dying.publish_pending()
    assert await rig.unpublished() == 1
    rig.bus.publish_many = real_publish  # type: ignore[method-assign]

    # A new relay (the restarted process) finds the committed row and delivers it, once.
    relay = rig.relay()
    relay.start()
    try:
        await eventually(lambda: _equals(rig.effects(), [("order-1", 1)]), timeout=60)
        assert await rig.unpublished() == 0
    finally:
        await relay.stop()
    # A later event on the same key (same partition, consumed in order), published after both relays are
    # done: once it is applied, the consumer is past any second copy of the first one.
    await rig.place("order-1", 2)
    await rig.relay().publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("order-1", 2)), timeout=60)
    assert await rig.effects() == [("order-1", 1), ("order-1", 2)]


async def test_crash_between_publish_and_mark_republishes_and_the_inbox_absorbs_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's fault hook (MART_FAULT_RELAY_CRASH_AFTER_PUBLISH, docs/reliability.md): the process dies
    after the batch reached the bus and before the rows are marked; the next relay publishes them again."""
    _subscribe(rig)

    class Exited(BaseException):  # what os._exit would do to the process, without ending the test run
        pass

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(outbox_module.os, "_exit", fake_exit)
    monkeypatch.setenv("MART_FAULT_RELAY_CRASH_AFTER_PUBLISH", "2")
    dying = rig.relay()
    monkeypatch.delenv("MART_FAULT_RELAY_CRASH_AFTER_PUBLISH")
    await rig.place("k", 1)
    assert await dying.publish_pending() == 1  # first batch: published and marked
    await rig.place("k", 2)
    with pytest.raises(Exited) as exited:
        await dying.publish_pending()  # second batch: on the bus, then the "process" exits
    assert exited.value.args == (86,)
    assert await rig.unpublished() == 1
    assert [r.key for r in await rig.bus.read_topic(TOPIC)] == ["k", "k"]

    relay = rig.relay()  # the restarted process: the hook is off (read once, at construction)
    assert await relay.publish_pending() == 1
    assert await rig.unpublished() == 0
    records = await rig.bus.read_topic(TOPIC)
    assert len(records) == 3 and len({r.header("ce_id") for r in records}) == 2  # one event twice
    await rig.place("k", 3)  # same key, after the duplicate
    await relay.publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("k", 3)), timeout=60)
    assert await rig.effects() == [("k", 1), ("k", 2), ("k", 3)]


async def test_rolled_back_state_change_publishes_nothing(rig: Rig) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with rig.db.transaction() as session:
            await record_event(
                session, orders_pb2.OrderPlaced(order_id="ghost"), key="ghost", source="contract-producer"
            )
            raise Boom
    relay = rig.relay()
    assert await relay.publish_pending() == 0
    await rig.place("real", 7)
    assert await relay.publish_pending() == 1
    records = await rig.bus.read_topic(TOPIC)
    assert [r.key for r in records] == ["real"]


async def test_duplicate_delivery_is_applied_once(rig: Rig) -> None:
    _subscribe(rig)
    envelope = Envelope.new(
        type="mart.orders.v1.OrderPlaced",
        source="contract-producer",
        topic=TOPIC,
        key="dup",
        payload=orders_pb2.OrderPlaced(order_id="dup", total_cents=5).SerializeToString(),
    )
    await rig.bus.publish(envelope.to_bus())
    await rig.bus.publish(envelope.to_bus())  # the same event id again (a producer retry)
    await rig.place("dup", 6)  # a later event on the same key: applied only after both copies were handled
    relay = rig.relay()
    await relay.publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("dup", 6)), timeout=60)
    assert await rig.effects() == [("dup", 5), ("dup", 6)]


async def test_poison_message_is_dead_lettered_while_later_ones_flow_and_redrive_delivers_it(
    rig: Rig,
) -> None:
    broken = {"on": True}

    async def handler(
        context: object, session: AsyncSession, event: orders_pb2.OrderPlaced, env: Envelope
    ) -> None:
        if event.order_id == "poison" and event.total_cents == 1 and broken["on"]:
            raise RuntimeError("handler bug")
        await _record_effect(context, session, event, env)

    _subscribe(rig, handler)
    relay = rig.relay()
    await rig.place("poison", 1)
    await rig.place("poison", 2)  # same key, after the poison one
    await rig.place("fine", 3)
    await relay.publish_pending()

    await eventually(lambda: _contains(rig.effects(), ("fine", 3)), timeout=60)
    await eventually(lambda: _contains(rig.effects(), ("poison", 2)), timeout=60)
    dead = await rig.bus.dead_letters(GROUP)
    assert len(dead) == 1
    assert dead[0].header("dlq_original_topic") == TOPIC
    assert dead[0].header("dlq_attempts") == str(rig.bus.retry.max_attempts)
    assert "handler bug" in (dead[0].header("dlq_reason") or "")
    assert ("poison", 1) not in await rig.effects()

    broken["on"] = False  # the fix is deployed
    assert await rig.bus.redrive(GROUP) == 1
    await eventually(lambda: _contains(rig.effects(), ("poison", 1)), timeout=60)
    assert await rig.bus.redrive(GROUP) == 0  # already re-driven
    await rig.place("poison", 4)  # same key, after everything re-driven: the consumer is past it once applied
    await relay.publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("poison", 4)), timeout=60)
    assert (await rig.effects()).count(("poison", 1)) == 1


async def test_records_that_cannot_be_decoded_go_straight_to_dead_letters(rig: Rig) -> None:
    _subscribe(rig)
    garbage = Envelope.new(
        type="mart.orders.v1.OrderPlaced", source="x", topic=TOPIC, key="g", payload=b"\xff\xff\xff"
    )
    no_headers = BusMessage(topic=TOPIC, key="n", value=b"")
    for msg in (garbage.to_bus(), no_headers):
        await rig.bus.publish(msg)
    await rig.place("ok", 1)
    await rig.relay().publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("ok", 1)), timeout=60)
    dead = await eventually(lambda: _at_least(rig.bus.dead_letters(GROUP), 2), timeout=60)
    reasons = {m.header("ce_id") or "(none)": m.header("dlq_reason") or "" for m in dead}
    assert reasons[garbage.id].startswith("permanent: malformed mart.orders.v1.OrderPlaced"), reasons
    assert reasons["(none)"].startswith("permanent: missing CloudEvents headers"), reasons
    assert {m.header("dlq_attempts") for m in dead} == {"1"}  # not retried


def _skipped(ce_type: str, known: str) -> float:
    value = REGISTRY.get_sample_value(
        "mart_consumer_events_skipped_total", {"group": GROUP, "ce_type": ce_type, "known": known}
    )
    return value or 0.0


async def test_event_types_a_consumer_does_not_handle_are_skipped_and_counted(rig: Rig) -> None:
    """A type this build does not know (a newer producer's, mid rolling deploy) and a known type the group
    has no handler for are passed over and counted, never dead-lettered; the events behind them on the same
    key are applied. Once in a poll's batch (one transaction), once delivered on its own."""
    newer, unhandled = "mart.orders.v1.OrderTeleported", "mart.orders.v1.OrderShipped"
    before = (_skipped(newer, "false"), _skipped(unhandled, "true"))

    def record(ce_type: str) -> BusMessage:
        payload = orders_pb2.OrderShipped(order_id="u").SerializeToString()
        return Envelope.new(type=ce_type, source="newer", topic=TOPIC, key="u", payload=payload).to_bus()

    # Published before the group starts: the consumer's first poll takes them together (a batch).
    await rig.bus.publish_many([record(newer), record(unhandled)])
    await rig.place("u", 1)
    await rig.relay().publish_pending()
    sub = _subscribe(rig)
    await eventually(lambda: _contains(rig.effects(), ("u", 1)), timeout=60)
    # Delivered alone (the one-by-one path of a subscriber).
    await sub(record(newer))
    await sub(record(unhandled))
    await rig.bus.publish(record(newer))
    await rig.place("u", 2)
    await rig.relay().publish_pending()
    await eventually(lambda: _contains(rig.effects(), ("u", 2)), timeout=60)

    assert await rig.effects() == [("u", 1), ("u", 2)]
    assert await rig.bus.dead_letters(GROUP) == []
    assert _skipped(newer, "false") == before[0] + 3
    assert _skipped(unhandled, "true") == before[1] + 2


async def test_per_key_order_holds_across_partitions(rig: Rig) -> None:
    _subscribe(rig)
    keys = [f"order-{i}" for i in range(6)]
    for seq in range(15):
        for key in keys:
            await rig.place(key, seq)
    relay = rig.relay()
    relay.start()
    try:
        await eventually(lambda: _length(rig.effects(), 90), timeout=90)
    finally:
        await relay.stop()
    seen = await rig.effects()
    for key in keys:
        assert [s for k, s in seen if k == key] == list(range(15))
    partitions = {m.partition for m in await rig.bus.read_topic(TOPIC)}
    assert len(partitions) > 1, "the keys should spread over several partitions"


class _CountingSubscriber(Subscriber):
    """Counts the transactions its events were applied in: a batch's, or one event's alone."""

    transactions = 0

    async def handle_batch(self, msgs: Sequence[BusMessage]) -> None:
        await super().handle_batch(msgs)
        self.transactions += 1

    async def __call__(self, msg: BusMessage) -> None:
        await super().__call__(msg)
        self.transactions += 1


async def test_a_collecting_group_applies_events_committed_shortly_after_each_other_together(
    rig: Rig,
) -> None:
    """A group off the saga's path (``collect_ms``, notification-service) lets the bus hold a new record for
    its window: six events committed 30 ms apart are applied in one or two transactions (the window may
    close between them once), in order, instead of one transaction each."""
    sub = _CountingSubscriber(GROUP, rig.db, {orders_pb2.OrderPlaced: _record_effect}, collect_ms=500)
    sub.attach(rig.bus)
    relay = rig.relay()
    relay.start()
    try:
        for seq in range(6):
            await rig.place("order-collected", seq)  # committed and published one by one
            await asyncio.sleep(0.03)
        await eventually(lambda: _length(rig.effects(), 6), timeout=60)
    finally:
        await relay.stop()
    assert [s for _, s in await rig.effects()] == list(range(6))
    assert sub.transactions <= 2, f"{sub.transactions} transactions for six events inside one window"


async def test_events_carry_cloudevents_headers(rig: Rig) -> None:
    await rig.place("ce", 1)
    await rig.relay().publish_pending()
    (record,) = await rig.bus.read_topic(TOPIC)
    env = Envelope.from_bus(record)
    assert env.type == "mart.orders.v1.OrderPlaced"
    assert env.source == "contract-producer"
    assert record.header("ce_specversion") == "1.0"
    assert record.header("content-type") == "application/protobuf"
    assert orders_pb2.OrderPlaced.FromString(record.value).order_id == "ce"


async def _equals(coro, expected):
    return await coro == expected


async def _contains(coro, item):
    return item in await coro


async def _length(coro, n):
    return len(await coro) >= n


async def _at_least(coro, n):
    items = await coro
    return items if len(items) >= n else None
