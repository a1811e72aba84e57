"""The outbox relay's two paths (docs/adr/0004-transactional-outbox.md): the in-memory fast path of a
relay that is alone on its database, and the ordered sweep once another process writes there too.

Both against the real bus adapters: the in-process bus on SQLite, and Kafka with the real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mart.orders.v1 import orders_pb2
from mart_common.bus.base import EventBus
from mart_common.db import Database
from mart_common.messaging import MESSAGING_METADATA, outbox_table
from mart_common.outbox import OutboxRelay, record_event
from mart_testkit.fixtures import eventually
from sqlalchemy import func, select

TOPIC = "mart.orders.v1"


async def _place(db: Database, key: str, seq: int) -> None:
    async with db.transaction() as session:
        await record_event(
            session, orders_pb2.OrderPlaced(order_id=key, total_cents=seq), key=key, source="relay-test"
        )


async def _unpublished(db: Database) -> int:
    async with db.read() as session:
        return await session.scalar(
            select(func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
        )


async def _published(bus: EventBus, key: str) -> list[int]:
    records = [m for m in await bus.read_topic(TOPIC) if m.key == key]
    return [orders_pb2.OrderPlaced.FromString(m.value).total_cents for m in records]


@pytest.fixture
async def setup(bus_kind: str, make_bus, new_database) -> AsyncIterator[tuple[str, EventBus]]:
    url = await new_database("sqlite" if bus_kind == "inprocess" else "postgres")
    db = Database(url)
    await db.create_all([MESSAGING_METADATA])
    await db.dispose()
    bus = make_bus(bus_kind)
    await bus.start()
    try:
        yield url, bus
    finally:
        await bus.stop()


async def test_a_rolled_back_transaction_is_never_handed_to_the_running_relay(setup) -> None:
    url, bus = setup
    db = Database(url)
    relay = OutboxRelay(db, bus, service="relay-test", poll_interval_s=0.05)
    await relay.join()
    relay.start()
    try:
        # One session: an event rolled back, then other work committed on the same session.
        async with db.session() as session:
            await record_event(
                session, orders_pb2.OrderPlaced(order_id="k", total_cents=1), key="k", source="relay-test"
            )
            await session.rollback()
            await record_event(
                session, orders_pb2.OrderPlaced(order_id="k", total_cents=2), key="k", source="relay-test"
            )
            await session.commit()
        await _place(db, "k", 3)
        # A savepoint released inside a transaction that then rolls back publishes nothing either
        # (the hand-over waits for the transaction's own commit).
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await record_event(
                    session, orders_pb2.OrderPlaced(order_id="k", total_cents=4), key="k", source="relay-test"
                )
                savepoint = await session.begin_nested()
                await savepoint.commit()
                raise RuntimeError("a later step of the same transaction fails")
        await _place(db, "k", 5)
        await eventually(lambda: _equals(_published(bus, "k"), [2, 3, 5]), timeout=60)
        # Published rows are marked (in batches) and never sent again by the recovery sweep.
        await eventually(lambda: _equals(_unpublished(db), 0), timeout=60)
        assert await relay.publish_pending() == 0
        assert await _published(bus, "k") == [2, 3, 5]
    finally:
        await relay.stop()
        await db.dispose()


@pytest.mark.parametrize("bus_kind", [pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_two_processes_on_one_database_keep_each_keys_order(setup) -> None:
    """Two relays on one PostgreSQL database (two replicas, each with its own pool): the second turns the
    first's fast path off, and a key written alternately by both is published in commit order. (A SQLite
    file belongs to one process: the embedded mode.)"""
    url, bus = setup
    first, second = Database(url), Database(url)
    relays = [OutboxRelay(db, bus, service="relay-test", poll_interval_s=0.05) for db in (first, second)]
    try:
        for relay in relays:
            await relay.join()
            relay.start()
        for seq in range(40):
            await _place((first, second)[seq % 2], "shared", seq)
        await eventually(lambda: _length(_published(bus, "shared"), 40), timeout=90)
        seen = await _published(bus, "shared")
        firsts = list(dict.fromkeys(seen))  # a re-sent duplicate (absorbed by inboxes) keeps its place
        assert firsts == list(range(40))
        await eventually(lambda: _equals(_unpublished(first), 0), timeout=60)
    finally:
        for relay in relays:
            await relay.stop()
        await first.dispose()
        await second.dispose()


async def _equals(coro, expected) -> bool:
    return await coro == expected


async def _length(coro, n: int) -> bool:
    return len(await coro) >= n
