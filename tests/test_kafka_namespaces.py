"""A test run leaves the developer's broker as it found it: a namespace's topics are deleted when the run
that made them is done, and no one else's (mart_testkit.kafka)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mart_common.polling import wait_until
from mart_testkit.kafka import KAFKA_BOOTSTRAP, delete_namespace, new_namespace

pytestmark = pytest.mark.kafka


async def _topics(prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(prefix)}
    finally:
        await admin.close()


async def _create(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names])
        # the controller answers once the topics are committed; the broker lists them a moment later
        await wait_until(admin.list_topics, until=lambda listed: set(names) <= set(listed), timeout=30)
    finally:
        await admin.close()


async def test_deleting_a_namespace_removes_its_topics_and_only_its_own() -> None:
    mine, theirs = new_namespace(), new_namespace()
    await _create([f"{mine}mart.orders.v1", f"{mine}order-service.dlq", f"{theirs}mart.orders.v1"])
    assert len(await _topics(mine)) == 2

    assert await delete_namespace(mine) == 2

    assert await _topics(mine) == set()
    assert await _topics(theirs) == {f"{theirs}mart.orders.v1"}
    assert await delete_namespace(theirs) == 1


async def test_a_prefix_that_is_not_a_namespace_is_refused() -> None:
    for prefix in ("", "t", "mart", "."):
        with pytest.raises(ValueError, match="not a namespace"):
            await delete_namespace(prefix)
