"""Poison messages and duplicates through a real service (inventory-service, its real handlers, inbox and
subscriber), on PostgreSQL + the Kafka broker and on SQLite + the in-process bus.

On ONE key (so one partition, where a stuck record would block everything behind it) the test publishes:
a record without CloudEvents headers, a malformed Protobuf payload of a type the service handles, an event
type the service does not know (as a newer producer would publish it), an event whose handler raises (the
handler is broken on purpose, then fixed), a good event after all of them, and a redelivery of the good one.
Expected: the unknown type is skipped and counted (``mart_consumer_events_skipped_total``), never
dead-lettered; the three bad ones land in ``inventory-service.dlq`` (permanent errors at once, the raising
one after its retries) while the good event behind them is applied once. The handler adds one unit on hand
per application (not idempotent by itself), so "once" is the inbox's doing. After the fix,
``bus.redrive(group)`` applies the once-failing event exactly once (a later duplicate does not even reach
the handler) and the permanent ones go back to the dead-letter topic.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from inventory_service.main import create_app
from inventory_service.models import Stock, StockMovement
from inventory_service.settings import InventorySettings
from mart.products.v1 import products_pb2
from mart_common.bus import EventBus
from mart_common.messaging import BusMessage, Envelope, inbox_table
from mart_testkit.fixtures import database_unavailable, eventually, running
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from inventory_service import services as inventory_services
from mart_common import contracts

GROUP = "inventory-service"
TOPIC = "mart.products.v1"
KEY = "poison-partition"
# An event type this build's contracts do not list: what a newer producer publishes during a rolling deploy.
UNKNOWN_TYPE = "mart.products.v1.ProductTeleported"
TEST_ACTOR = uuid.UUID("00000000-0000-4000-8000-00000000a11c")


def product_created(product_id: uuid.UUID | str) -> Envelope:
    now = Timestamp()
    now.GetCurrentTime()
    event = products_pb2.ProductCreated(
        product=products_pb2.Product(
            product_id=str(product_id),
            sku=f"P-{uuid.uuid4().hex[:6]}",
            name="p",
            price_cents=100,
            currency="USD",
            version=1,
            updated_at=now,
        ),
        occurred_at=now,
    )
    return Envelope.new(
        type=contracts.ce_type(event),
        source="product-service",
        topic=TOPIC,
        key=KEY,
        payload=event.SerializeToString(),
    )


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            ("kafka", "postgres"), marks=[pytest.mark.kafka, pytest.mark.postgres], id="postgres-kafka"
        ),
        pytest.param(("inprocess", "sqlite"), id="sqlite-inprocess"),
    ],
)
async def test_poison_messages_are_dead_lettered_without_blocking_and_redriven_once(
    kind: tuple[str, str], make_bus: Callable[..., EventBus], new_database: Callable[..., Any], tmp_path: Path
) -> None:
    bus_kind, db_kind = kind
    bus = make_bus(bus_kind)
    settings = InventorySettings(
        database_url=await new_database(db_kind), event_bus=bus_kind, data_dir=tmp_path, log_json=False
    )
    app = create_app(settings, bus=bus)
    subscriber = app.state.runtime.subscriber
    created_type = contracts.ce_type(products_pb2.ProductCreated)
    real_handler = subscriber.handlers[created_type]
    broken_id, good_id = uuid.uuid4(), uuid.uuid4()
    calls: Counter[str] = Counter()  # handler calls per product id
    bug = {"on": True}

    async def handler(context: Any, session: Any, event: Any, envelope: Envelope) -> None:
        pid = event.product.product_id
        calls[pid] += 1
        if bug["on"] and pid == str(broken_id):
            raise RuntimeError("handler bug (injected by the test)")
        await real_handler(context, session, event, envelope)
        # An effect that is NOT idempotent by itself, in the inbox's transaction: one unit on hand and one
        # stock movement per application. Only the inbox stands between a redelivery and a second unit.
        await inventory_services.adjust_stock(
            session, context, uuid.UUID(pid), 1, f"event {envelope.id}", actor_id=TEST_ACTOR
        )

    subscriber.handlers[created_type] = handler
    skipped_before = _skipped(GROUP, UNKNOWN_TYPE)
    await bus.start()
    try:
        async with running(app):
            db = app.state.runtime.db

            async def on_hand(pid: uuid.UUID) -> int | None:
                async with db.session() as s:
                    return await s.scalar(select(Stock.on_hand).where(Stock.product_id == pid))

            async def movements(pid: uuid.UUID) -> int:
                async with db.session() as s:
                    return int(
                        await s.scalar(
                            select(func.count())
                            .select_from(StockMovement)
                            .where(StockMovement.product_id == pid)
                        )
                    )

            async def inbox_rows(event_id: str) -> int:
                async with db.session() as s:
                    return int(
                        await s.scalar(
                            select(func.count())
                            .select_from(inbox_table)
                            .where(inbox_table.c.event_id == event_id)
                        )
                    )

            good = product_created(good_id)
            failing = product_created(broken_id)
            malformed = Envelope.new(
                type=created_type, source="evil", topic=TOPIC, key=KEY, payload=b"\xff\xff\xff\xff\x0f"
            )
            unknown = Envelope.new(
                type=UNKNOWN_TYPE, source="newer", topic=TOPIC, key=KEY, payload=b"\x08\x01"
            )
            headerless = BusMessage(topic=TOPIC, key=KEY, value=b"not a cloud event", headers=())
            await bus.publish_many(
                [
                    headerless,
                    malformed.to_bus(),
                    unknown.to_bus(),
                    failing.to_bus(),
                    good.to_bus(),
                    good.to_bus(),  # a redelivery: the same event id again
                ]
            )

            # The good event behind the bad ones on the same partition is applied, once.
            await eventually(lambda: _is(on_hand(good_id), 1), timeout=60, message="good event applied")
            dead = await eventually(
                lambda: _at_least(bus.dead_letters(GROUP), 3), timeout=60, message="three dead letters"
            )
            assert await inbox_rows(good.id) == 1 and await on_hand(good_id) == 1
            assert await movements(good_id) == 1
            assert await on_hand(broken_id) is None
            reasons = {m.header("ce_id") or "(no ce_id)": m.header("dlq_reason") or "" for m in dead}
            # A type the consumer has no handler for is skipped and counted, never dead-lettered; a type it
            # handles that does not decode, and a record without headers, are.
            assert set(reasons) == {failing.id, malformed.id, "(no ce_id)"}, reasons
            assert reasons[failing.id].startswith("RuntimeError"), reasons
            assert reasons[malformed.id].startswith("permanent: malformed"), reasons
            assert reasons["(no ce_id)"].startswith("permanent: missing CloudEvents headers"), reasons
            assert _skipped(GROUP, UNKNOWN_TYPE) == skipped_before + 1
            assert await inbox_rows(unknown.id) == 0
            assert calls[str(broken_id)] == bus.retry.max_attempts  # retried, then dead-lettered
            assert all(m.header("dlq_original_topic") == TOPIC for m in dead)

            # Fix the handler, re-drive: the failing event is applied exactly once.
            bug["on"] = False
            assert await bus.redrive(GROUP) == 3
            await eventually(
                lambda: _is(on_hand(broken_id), 1), timeout=60, message="re-driven event applied"
            )
            # The permanent ones are dead-lettered again (still poison); nothing else changes.
            await eventually(
                lambda: _at_least(bus.dead_letters(GROUP), 5), timeout=60, message="poison back in dlq"
            )
            assert await bus.redrive(GROUP) == 2  # only the new dead letters; the fixed one is not among them
            await eventually(
                lambda: _at_least(bus.dead_letters(GROUP), 7), timeout=60, message="poison again"
            )
            # A duplicate of the applied event (as a second re-drive of the same record would be) is ignored:
            # the handler is not even called, and no second unit appears.
            await bus.publish(failing.to_bus())
            marker = product_created(uuid.uuid4())
            await bus.publish(marker.to_bus())
            await eventually(lambda: _is(inbox_rows(marker.id), 1), timeout=60, message="marker applied")
            assert await inbox_rows(failing.id) == 1
            assert await on_hand(broken_id) == 1 and await on_hand(good_id) == 1
            assert await movements(broken_id) == 1 and await movements(good_id) == 1
            assert calls[str(broken_id)] == bus.retry.max_attempts + 1
            assert calls[str(good_id)] >= 1
    finally:
        await bus.stop()


def _skipped(group: str, ce_type: str) -> float:
    """``mart_consumer_events_skipped_total`` for an unknown type, as /metrics would report it."""
    value = REGISTRY.get_sample_value(
        "mart_consumer_events_skipped_total", {"group": group, "ce_type": ce_type, "known": "false"}
    )
    return value or 0.0


async def _is(awaitable: Any, expected: Any) -> bool:
    return (await awaitable) == expected


async def _at_least(awaitable: Any, n: int) -> Any:
    items = await awaitable
    return items if len(items) >= n else None


@pytest.mark.postgres
@pytest.mark.kafka
async def test_an_event_arriving_while_the_database_is_down_waits_instead_of_being_dead_lettered(
    make_bus: Callable[..., EventBus], new_database: Callable[..., Any], tmp_path: Path
) -> None:
    """Regression (found by the fault suite): during a 5 s outage of the order-service database a
    StockReserved event used up its retries and was dead-lettered, leaving its order PENDING."""
    import asyncio

    bus = make_bus("kafka")
    url = await new_database("postgres")
    settings = InventorySettings(database_url=url, event_bus="kafka", data_dir=tmp_path, log_json=False)
    app = create_app(settings, bus=bus)
    await bus.start()
    try:
        async with running(app):
            db = app.state.runtime.db
            async with database_unavailable(url):
                pid = uuid.uuid4()
                await bus.publish(product_created(pid).to_bus())
                await asyncio.sleep(4.0)  # longer than all the bus's retries with FAST_RETRY

            async def applied() -> bool:
                async with db.session() as s:
                    n = await s.scalar(select(func.count()).select_from(Stock).where(Stock.product_id == pid))
                return n == 1

            await eventually(applied, timeout=30, message="event applied after the database came back")
            assert await bus.dead_letters(GROUP) == []
    finally:
        await bus.stop()


@pytest.mark.postgres
async def test_requests_during_a_database_outage_answer_503_not_500(
    new_database: Callable[..., Any], tmp_path: Path, jwt_keys: Any
) -> None:
    """Regression (found by the fault suite): with its database away, a service answered 500."""
    url = await new_database("postgres")
    settings = InventorySettings(
        database_url=url,
        event_bus="inprocess",
        inprocess_bus_url=f"sqlite+aiosqlite:///{tmp_path / 'bus.sqlite'}",
        data_dir=tmp_path,
        log_json=False,
    )
    app = create_app(settings, token_verifier=jwt_keys.verifier())
    async with running(app) as client:
        async with database_unavailable(url):
            r = await client.get(f"/stock/{uuid.uuid4()}")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers.get("retry-after")
            assert (await client.get("/ready")).status_code == 503
        assert (await client.get(f"/stock/{uuid.uuid4()}")).status_code == 404


async def test_a_kafka_producer_out_of_sync_after_a_broker_restart_is_replaced() -> None:
    """Regression (found by the fault suite): after the broker restarted, inventory's idempotent producer
    answered every send with OutOfOrderSequenceNumber forever; its outbox never drained and orders stayed
    PENDING. The adapter now replaces the producer and the relay's retry goes through."""
    from aiokafka.errors import OutOfOrderSequenceNumber
    from mart_common.bus.kafka import KafkaBus

    class BrokenProducer:
        stopped = False

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            raise OutOfOrderSequenceNumber()

        async def stop(self) -> None:
            self.stopped = True

    class GoodProducer:
        sent = 0

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            fut: Any = __import__("asyncio").get_running_loop().create_future()
            fut.set_result(None)
            return fut

    bus = KafkaBus("127.0.0.1:1")
    broken, good = BrokenProducer(), GoodProducer()
    bus._producer, bus._started = broken, True  # type: ignore[assignment]

    async def no_topics(_topics: Any) -> None:
        return None

    async def new_producer() -> Any:
        return good

    bus.ensure_topics = no_topics  # type: ignore[method-assign]
    bus._new_producer = new_producer  # type: ignore[method-assign]
    message = BusMessage(topic=TOPIC, key="k", value=b"v")
    with pytest.raises(OutOfOrderSequenceNumber):
        await bus.publish_many([message])
    assert broken.stopped and bus._producer is good
    await bus.publish_many([message])  # the relay's retry
    assert good.sent == 1
