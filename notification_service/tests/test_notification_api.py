"""GET /notifications (own, paginated, newest first, unread filter), mark read, GET/PUT /preferences."""

from __future__ import annotations

import uuid

import pytest

from .conftest import order_paid, user_registered


async def test_notifications_need_a_token(service_client):
    async with service_client() as client:
        for method, path in [("GET", "/notifications"), ("GET", "/preferences"), ("PUT", "/preferences")]:
            response = await client.request(method, path, json={"email": True, "sms": False})
            assert response.status_code == 401
            assert response.headers["content-type"].startswith("application/problem+json")


async def test_each_user_sees_only_their_notifications_newest_first(service_client, jwt_keys):
    ada, bob = uuid.uuid4(), uuid.uuid4()
    async with service_client() as client:
        await client.feed(user_registered(ada, "ada@example.com"))
        await client.feed(user_registered(bob, "bob@example.com", full_name="Bob"))
        orders = [order_paid(ada) for _ in range(3)]
        for envelope in orders:
            await client.feed(envelope)

        page = (await client.get("/notifications", headers=jwt_keys.headers(ada))).json()
        assert page["total"] == 4 and page["limit"] == 20 and page["offset"] == 0
        assert [n["kind"] for n in page["items"]] == ["payment_receipt"] * 3 + ["welcome"]
        assert [n["order_id"] for n in page["items"][:3]] == [e.key for e in reversed(orders)]
        assert all(not n["read"] for n in page["items"])

        bobs = (await client.get("/notifications", headers=jwt_keys.headers(bob))).json()
        assert bobs["total"] == 1 and bobs["items"][0]["subject"] == "Welcome to Online Mart, Bob!"

        second = (await client.get("/notifications?limit=2&offset=2", headers=jwt_keys.headers(ada))).json()
        assert [n["id"] for n in second["items"]] == [n["id"] for n in page["items"][2:4]]

        # Mark one read; other people's notifications do not exist for you.
        first_id = page["items"][0]["id"]
        assert (
            await client.post(f"/notifications/{first_id}/read", headers=jwt_keys.headers(bob))
        ).status_code == 404
        read = await client.post(f"/notifications/{first_id}/read", headers=jwt_keys.headers(ada))
        assert read.status_code == 200 and read.json()["read"] is True and read.json()["read_at"]
        unread = (await client.get("/notifications?unread=true", headers=jwt_keys.headers(ada))).json()
        assert unread["total"] == 3 and first_id not in [n["id"] for n in unread["items"]]
        missing = await client.post(f"/notifications/{uuid.uuid4()}/read", headers=jwt_keys.headers(ada))
        assert missing.status_code == 404

        assert (
            await client.get("/notifications?limit=101", headers=jwt_keys.headers(ada))
        ).status_code == 422


async def test_preferences_default_then_update(service_client, jwt_keys):
    user = uuid.uuid4()
    async with service_client() as client:
        headers = jwt_keys.headers(user)
        assert (await client.get("/preferences", headers=headers)).json() == {"email": True, "sms": False}
        response = await client.put("/preferences", json={"email": False, "sms": True}, headers=headers)
        assert response.status_code == 200 and response.json() == {"email": False, "sms": True}
        assert (await client.get("/preferences", headers=headers)).json() == {"email": False, "sms": True}
        other = (await client.get("/preferences", headers=jwt_keys.headers(uuid.uuid4()))).json()
        assert other == {"email": True, "sms": False}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "yes", "sms": False},
        {"email": 1, "sms": False},
        {"email": True, "sms": None},
        {"email": True},
        {"email": True, "sms": False, "push": True},
        [],
    ],
)
async def test_put_preferences_refuses_anything_but_booleans(service_client, jwt_keys, body):
    async with service_client() as client:
        response = await client.put("/preferences", json=body, headers=jwt_keys.headers(uuid.uuid4()))
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_health_ready_and_metrics(service_client):
    async with service_client() as client:
        assert (await client.get("/health")).json()["service"] == "notification-service"
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
