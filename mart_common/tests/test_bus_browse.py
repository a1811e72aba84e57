"""Looking at the bus (``mart events``): topics with counts and group lag, a tail from the beginning or the
end with filters, events decoded to JSON — on the in-process log and on the real Kafka broker alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart_common.bus.base import EventBus
from mart_common.bus.browse import EventFilter, decode_event
from mart_common.contracts import ce_type, topic_for
from mart_common.messaging import BusMessage, Envelope
from mart_testkit.fixtures import eventually

ORDERS = topic_for(orders_pb2.OrderPlaced)
PAYMENTS = topic_for(payments_pb2.PaymentSucceeded)
GROUP = "browse-consumer"


def event(message: Message, key: str) -> BusMessage:
    return Envelope.new(
        type=ce_type(message),
        source="test",
        topic=topic_for(message),
        key=key,
        payload=message.SerializeToString(),
        correlation_id="corr-1",
    ).to_bus()


def placed(order_id: str, cents: int) -> BusMessage:
    return event(orders_pb2.OrderPlaced(order_id=order_id, total_cents=cents, currency="EUR"), order_id)


async def drain(tail) -> list[BusMessage]:  # noqa: ANN001
    return [msg async for msg in tail]


async def test_topics_show_counts_and_each_groups_lag(
    bus_kind: str, make_bus: Callable[..., EventBus]
) -> None:
    orders = [str(uuid.uuid4()) for _ in range(3)]
    consumer = make_bus(bus_kind)
    seen: list[str] = []

    async def handle(msg: BusMessage) -> None:
        seen.append(msg.key)

    consumer.subscribe(GROUP, [ORDERS], handle)
    await consumer.start()
    try:
        await consumer.publish_many([placed(o, 100 + i) for i, o in enumerate(orders)])

        async def consumed_all() -> bool:
            info = {t.topic: t for t in await consumer.topics_overview()}.get(ORDERS)
            return info is not None and any(g.group == GROUP and g.lag == 0 for g in info.groups)

        await eventually(consumed_all, message="the group committed every record")
    finally:
        await consumer.stop()
    assert sorted(seen) == sorted(orders)

    publisher = make_bus(bus_kind)
    await publisher.start()
    try:
        await publisher.publish_many([placed(str(uuid.uuid4()), 1), placed(str(uuid.uuid4()), 2)])
        overview = {t.topic: t for t in await publisher.topics_overview()}
    finally:
        await publisher.stop()
    info = overview[ORDERS]
    assert info.messages == 5
    assert info.partitions == 3
    assert [(g.group, g.committed, g.lag) for g in info.groups] == [(GROUP, 3, 2)]


async def test_tail_from_the_beginning_decodes_and_filters(
    bus_kind: str, make_bus: Callable[..., EventBus]
) -> None:
    order_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    payment_id = str(uuid.uuid4())
    bus = make_bus(bus_kind)
    await bus.start()
    try:
        await bus.publish_many(
            [
                placed(order_id, 1250),
                placed(other, 99),
                event(
                    payments_pb2.PaymentSucceeded(
                        payment_id=payment_id, order_id=order_id, amount_cents=1250
                    ),
                    payment_id,
                ),
            ]
        )
        async with bus.tail(from_beginning=True, follow=False) as tail:
            everything = await drain(tail)
        async with bus.tail([PAYMENTS], from_beginning=True, follow=False) as tail:
            payments_only = await drain(tail)
    finally:
        await bus.stop()

    assert sorted(m.key for m in everything) == sorted([order_id, other, payment_id])
    assert [m.key for m in payments_only] == [payment_id]

    first = decode_event(next(m for m in everything if m.key == order_id))
    assert first.type == "mart.orders.v1.OrderPlaced"
    assert first.topic == ORDERS and first.offset is not None and first.partition is not None
    assert first.payload is not None
    assert first.payload["order_id"] == order_id
    assert first.payload["total_cents"] == "1250"  # int64 as JSON: a string (proto3 JSON mapping)
    assert first.payload["currency"] == "EUR"
    assert first.headers["ce_specversion"] == "1.0"
    assert first.headers["correlation_id"] == "corr-1"
    assert first.error is None

    by_order = [m.key for m in everything if EventFilter(order=order_id).matches(m)]
    assert sorted(by_order) == sorted([order_id, payment_id])  # the payment is keyed by its own id
    by_type = [m.key for m in everything if EventFilter(types=("PaymentSucceeded",)).matches(m)]
    assert by_type == [payment_id]
    by_full_type = [
        m.key for m in everything if EventFilter(types=("mart.orders.v1.OrderPlaced",)).matches(m)
    ]
    assert sorted(by_full_type) == sorted([order_id, other])
    assert [m.key for m in everything if EventFilter(key=other).matches(m)] == [other]


async def test_tail_from_the_end_follows_new_records_only(
    bus_kind: str, make_bus: Callable[..., EventBus]
) -> None:
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    bus = make_bus(bus_kind)
    await bus.start()
    try:
        await bus.publish(placed(old, 1))
        async with bus.tail([ORDERS]) as tail:  # from the end, following
            await bus.publish(placed(new, 2))
            async with asyncio.timeout(60):
                first = await anext(aiter(tail))
    finally:
        await bus.stop()
    assert first.key == new
    assert decode_event(first).payload["order_id"] == new  # type: ignore[index]


def test_an_unknown_event_type_is_shown_raw() -> None:
    msg = BusMessage(topic="x", key="k", value=b"\x01\x02", headers=(("ce_type", b"mart.nope.v1.Gone"),))
    decoded = decode_event(msg)
    assert decoded.payload is None
    assert decoded.error is not None and "UnknownEventType" in decoded.error
    assert decoded.as_dict()["payload_base64"] == "AQI="


async def test_a_tail_opened_as_its_topics_are_created_follows_every_one_of_them(
    make_bus: Callable[..., EventBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after creating a topic the broker may answer a metadata request for it with
    LEADER_NOT_AVAILABLE, and the client's metadata then lacks that topic: here the first metadata the tail
    reads lacks the payments topic, as it does on a broker that is a moment late."""
    bus = make_bus("kafka")
    lagging = {bus.namespace + PAYMENTS}  # type: ignore[attr-defined]
    listed = AIOKafkaConsumer.partitions_for_topic

    def first_answer_lacks_it(self: AIOKafkaConsumer, topic: str) -> set[int] | None:
        if topic in lagging:
            lagging.discard(topic)
            return None
        return listed(self, topic)

    monkeypatch.setattr(AIOKafkaConsumer, "partitions_for_topic", first_answer_lacks_it)
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.start()
    try:
        async with bus.tail([ORDERS, PAYMENTS]) as tail:  # from the end, following
            assert not lagging, "the tail asked for the payments topic's partitions"
            await bus.publish_many(
                [
                    placed(order_id, 1),
                    event(
                        payments_pb2.PaymentSucceeded(payment_id=payment_id, order_id=order_id), payment_id
                    ),
                ]
            )
            records = aiter(tail)
            async with asyncio.timeout(60):
                seen = {(await anext(records)).topic for _ in range(2)}
    finally:
        await bus.stop()
    assert seen == {ORDERS, PAYMENTS}
