"""A registration puts exactly one event on the real Kafka topic, with the CloudEvents headers."""

from __future__ import annotations

from datetime import datetime

import pytest
from mart.users.v1 import users_pb2
from mart_testkit.fixtures import eventually

from mart_common import contracts


@pytest.mark.kafka
async def test_registration_publishes_one_user_registered_on_kafka(service_client, make_bus, api) -> None:
    bus = make_bus("kafka")
    await bus.start()
    try:
        async with service_client(bus=bus, event_bus="kafka") as client:
            user = await api.register(client, "kafka.user@example.com", phone="+1 555 0199")

            async def published() -> list:
                records = [m for m in await bus.read_topic("mart.users.v1") if m.key == user["id"]]
                return records or None

            records = await eventually(published, timeout=30)
            # Give a duplicate a moment to show up, then check there is exactly one.
            await client.get("/health")
            records = [m for m in await bus.read_topic("mart.users.v1") if m.key == user["id"]]
            assert len(records) == 1
            record = records[0]
            headers = {k: v.decode() for k, v in record.headers}
            assert headers["ce_type"] == "mart.users.v1.UserRegistered"
            assert headers["ce_source"] == "user-service"
            assert headers["ce_specversion"] == "1.0"
            assert headers["content-type"] == "application/protobuf"
            assert headers["ce_id"]
            datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
            event = contracts.decode(headers["ce_type"], record.value)
            assert isinstance(event, users_pb2.UserRegistered)
            assert event.email == "kafka.user@example.com" and event.full_name == "Test User"
            assert event.phone == "+1 555 0199" and event.role == users_pb2.ROLE_CUSTOMER
    finally:
        await bus.stop()
