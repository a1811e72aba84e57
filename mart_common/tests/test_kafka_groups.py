"""Consumer groups on the real broker: replicas of a service share a group
(docs/scaling.md, docs/adr/0060-round-robin-assignor.md).

A member that sends its JoinGroup again while the group completes a rebalance starts another rebalance if its
metadata changed since its last join; when every assignment changes the metadata (the sticky assignor's
previous-assignment data) two members can hand rebalances to each other without end and nothing is
consumed. The group's members therefore advertise the same metadata in every generation.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from mart_common.bus.base import EventBus
from mart_common.messaging import BusMessage
from mart_testkit.fixtures import KAFKA_BOOTSTRAP, eventually

GROUP = "replicated-service"
TOPICS = ("mart.orders.v1", "mart.products.v1")


async def _ignore(_msg: BusMessage) -> None:
    return None


Members = dict[str, tuple[bytes, bytes]]  # member id → (JoinGroup metadata, assignment)


async def _members(bus: Any, admin: AIOKafkaAdminClient) -> Members | None:
    """The group's members once it is stable, else None."""
    [response] = await admin.describe_consumer_groups([bus.namespace + GROUP])
    _error, _group, state, _protocol_type, _protocol, members, *_ = response.groups[0]
    if state != "Stable":
        return None
    return {m[0]: (bytes(m[-2]), bytes(m[-1])) for m in members}


async def _stable_with(buses: list[EventBus], admin: AIOKafkaAdminClient, n: int) -> Members:
    async def ready() -> Members | None:
        members = await _members(buses[0], admin)
        # Stable, n members, each with partitions of its own.
        if members is None or len(members) != n or not all(len(a) > 8 for _m, a in members.values()):
            return None
        return members

    return await eventually(ready, timeout=60, message=f"group stable with {n} members")


@pytest.mark.kafka
async def test_replicas_advertise_the_same_metadata_in_every_generation(make_bus) -> None:
    replicas = [make_bus("kafka") for _ in range(2)]
    for bus in replicas:
        bus.subscribe(GROUP, TOPICS, _ignore)
        await bus.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        first = await _stable_with(replicas, admin, 2)
        # A third replica starts, then stops: two more generations, partitions moved both times.
        third = make_bus("kafka")
        third.subscribe(GROUP, TOPICS, _ignore)
        await third.start()
        try:
            with_third = await _stable_with(replicas, admin, 3)
        finally:
            await third.stop()
        again = await _stable_with(replicas, admin, 2)
        assert set(again) == set(first) and set(first) < set(with_third)
        assert {m: first[m][1] for m in first} != {m: with_third[m][1] for m in first}  # partitions moved
        # What each member advertised when it joined again is what it advertised the first time.
        assert {m: again[m][0] for m in again} == {m: first[m][0] for m in first}
        assert {m: with_third[m][0] for m in first} == {m: first[m][0] for m in first}
    finally:
        await admin.close()
        for bus in replicas:
            await bus.stop()
