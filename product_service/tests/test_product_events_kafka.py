"""A product change puts exactly one event on the real Kafka topic, with the CloudEvents headers."""

from __future__ import annotations

from datetime import datetime

import pytest
from mart.products.v1 import products_pb2
from mart_testkit.fixtures import eventually

from mart_common import contracts


@pytest.mark.kafka
async def test_each_product_change_publishes_exactly_one_event_on_kafka(
    service_client, catalog, make_bus
) -> None:
    bus = make_bus("kafka")
    await bus.start()
    try:
        async with service_client(bus=bus, event_bus="kafka") as client:
            product = await catalog.product(client, sku="KAFKA-1", name="Kafka mug", price_cents=1500)
            key = product["id"]

            async def records(n: int):
                found = [m for m in await bus.read_topic("mart.products.v1") if m.key == key]
                return found if len(found) >= n else None

            created = await eventually(lambda: records(1), timeout=30)
            assert len(created) == 1

            patched = await client.patch(
                f"/products/{key}", json={"price_cents": 1700}, headers=catalog.admin
            )
            assert patched.status_code == 200
            await eventually(lambda: records(2), timeout=30)
            assert (await client.delete(f"/products/{key}", headers=catalog.admin)).status_code == 204
            await eventually(lambda: records(3), timeout=30)
            # A second archive changes nothing and publishes nothing.
            assert (await client.delete(f"/products/{key}", headers=catalog.admin)).status_code == 204
            relay = client.runtime.relay
            assert await relay.publish_pending() == 0

            messages = [m for m in await bus.read_topic("mart.products.v1") if m.key == key]
            assert len(messages) == 3
            expected = [
                ("mart.products.v1.ProductCreated", 1, 1500, False),
                ("mart.products.v1.ProductUpdated", 2, 1700, False),
                ("mart.products.v1.ProductArchived", 3, 1700, True),
            ]
            ids = set()
            for message, (ce_type, version, price, archived) in zip(messages, expected, strict=True):
                headers = {k: v.decode() for k, v in message.headers}
                assert headers["ce_type"] == ce_type
                assert headers["ce_source"] == "product-service"
                assert headers["ce_specversion"] == "1.0"
                assert headers["content-type"] == "application/protobuf"
                datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
                ids.add(headers["ce_id"])
                event = contracts.decode(ce_type, message.value)
                assert isinstance(event.product, products_pb2.Product)
                assert event.product.product_id == key and event.product.sku == "KAFKA-1"
                assert (event.product.version, event.product.price_cents, event.product.archived) == (
                    version,
                    price,
                    archived,
                )
                assert event.product.currency == "USD" and event.occurred_at.seconds > 0
            assert len(ids) == 3
    finally:
        await bus.stop()
