"""Own account and user management: role checks, 404 for others' accounts, deactivation, events."""

from __future__ import annotations

import json
import uuid

from mart.users.v1 import users_pb2
from mart_common.messaging import outbox_table
from sqlalchemy import select

from mart_common import contracts


async def _admin(client, api) -> dict[str, str]:
    return api.bearer(await api.login(client, *api.admin))


async def _outbox(client) -> list:
    async with client.runtime.db.session() as session:
        rows = (await session.execute(select(outbox_table).order_by(outbox_table.c.seq))).all()
    return [contracts.decode(r.ce_type, r.payload) for r in rows]


async def test_customers_get_403_on_admin_endpoints_and_404_for_other_users(service_client, api) -> None:
    async with service_client() as client:
        ann = await api.register(client, "ann@example.com")
        bob = await api.register(client, "bob@example.com")
        ann_h = api.bearer(await api.login(client, "ann@example.com"))
        assert (await client.get("/users", headers=ann_h)).status_code == 403
        patch = await client.patch(f"/users/{bob['id']}", json={"role": "admin"}, headers=ann_h)
        assert patch.status_code == 403
        assert patch.headers["content-type"].startswith("application/problem+json")
        assert (await client.get(f"/users/{bob['id']}", headers=ann_h)).status_code == 404
        assert (await client.get(f"/users/{uuid.uuid4()}", headers=ann_h)).status_code == 404
        own = await client.get(f"/users/{ann['id']}", headers=ann_h)
        assert own.status_code == 200 and own.json()["email"] == "ann@example.com"
        assert (await client.get("/users/not-a-uuid", headers=ann_h)).status_code == 422
        assert (await client.get("/users")).status_code == 401


async def test_admin_lists_users_with_totals_and_search(service_client, api) -> None:
    async with service_client() as client:
        for i in range(5):
            await api.register(client, f"shopper{i}@example.com")
        await api.register(client, "other@example.com", full_name="Percent 100%_")
        admin = await _admin(client, api)
        page = (await client.get("/users", params={"limit": 2, "offset": 1}, headers=admin)).json()
        assert page["total"] == 7 and page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) == 2
        found = (await client.get("/users", params={"q": "SHOPPER"}, headers=admin)).json()
        assert found["total"] == 5
        assert {u["email"] for u in found["items"]} == {f"shopper{i}@example.com" for i in range(5)}
        wildcard = (await client.get("/users", params={"q": "%_"}, headers=admin)).json()
        assert [u["email"] for u in wildcard["items"]] == ["other@example.com"]
        assert "password" not in json.dumps(page)
        for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "x"}, {"q": "x" * 500}):
            assert (await client.get("/users", params=params, headers=admin)).status_code == 422, params


async def test_admin_changes_role_and_deactivation_ends_sessions(service_client, api) -> None:
    async with service_client() as client:
        user = await api.register(client, "carl@example.com")
        tokens = await api.login(client, "carl@example.com")
        admin = await _admin(client, api)

        promoted = await client.patch(f"/users/{user['id']}", json={"role": "admin"}, headers=admin)
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        refreshed = (
            await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).json()
        assert (await client.get("/users", headers=api.bearer(refreshed))).status_code == 200

        off = await client.patch(f"/users/{user['id']}", json={"is_active": False}, headers=admin)
        assert off.status_code == 200 and off.json()["is_active"] is False
        login = await client.post(
            "/auth/login", data={"username": "carl@example.com", "password": "correct-horse"}
        )
        assert login.status_code == 403
        assert (
            await client.post("/auth/refresh", json={"refresh_token": refreshed["refresh_token"]})
        ).status_code == 401
        assert (await client.get("/users/me", headers=api.bearer(refreshed))).status_code == 401

        assert (
            await client.patch(f"/users/{uuid.uuid4()}", json={"role": "admin"}, headers=admin)
        ).status_code == 404
        bad = await client.patch(f"/users/{user['id']}", json={"role": "superuser"}, headers=admin)
        assert bad.status_code == 422
        me = (await client.get("/users/me", headers=admin)).json()
        self_demote = await client.patch(f"/users/{me['id']}", json={"role": "customer"}, headers=admin)
        assert self_demote.status_code == 409

        events = await _outbox(client)
        updates = [e for e in events if isinstance(e, users_pb2.UserUpdated) and e.user_id == user["id"]]
        assert [(e.role, e.is_active) for e in updates] == [
            (users_pb2.ROLE_ADMIN, True),
            (users_pb2.ROLE_ADMIN, False),
        ]


async def test_update_me_contact_details_and_password(service_client, api) -> None:
    async with service_client() as client:
        user = await api.register(client, "dora@example.com")
        await api.register(client, "taken@example.com")
        tokens = await api.login(client, "dora@example.com")
        h = api.bearer(tokens)

        changed = await client.patch(
            "/users/me", json={"full_name": "Dora D", "phone": "+44 20 7946 0000"}, headers=h
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["full_name"] == "Dora D" and changed.json()["phone"] == "+44 20 7946 0000"

        missing = await client.patch("/users/me", json={"password": "new-password-1"}, headers=h)
        assert missing.status_code == 422
        wrong = await client.patch(
            "/users/me", json={"password": "new-password-1", "current_password": "nope-nope"}, headers=h
        )
        assert wrong.status_code == 403
        assert wrong.headers["content-type"].startswith("application/problem+json")
        taken = await client.patch(
            "/users/me", json={"email": "TAKEN@example.com", "current_password": "correct-horse"}, headers=h
        )
        assert taken.status_code == 409
        ok = await client.patch(
            "/users/me",
            json={
                "password": "new-password-1",
                "email": "Dora2@Example.com",
                "current_password": "correct-horse",
            },
            headers=h,
        )
        assert ok.status_code == 200 and ok.json()["email"] == "dora2@example.com"
        assert "password" not in ok.text

        # The password change ended the old sessions; the new password works, the old one does not.
        assert (
            await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401
        await api.login(client, "dora2@example.com", "new-password-1")
        old = await client.post(
            "/auth/login", data={"username": "dora2@example.com", "password": "correct-horse"}
        )
        assert old.status_code == 401

        for body in (
            {"full_name": "x" * 1000},
            {"phone": "abc"},
            {"email": "nope"},
            {"role": "admin"},
            {"password": "short", "current_password": "new-password-1"},
            {"full_name": 5},
        ):
            assert (await client.patch("/users/me", json=body, headers=h)).status_code in (401, 422), body

        events = [e for e in await _outbox(client) if getattr(e, "user_id", None) == user["id"]]
        assert isinstance(events[0], users_pb2.UserRegistered)
        assert events[0].email == "dora@example.com" and events[0].full_name == "Test User"
        assert [type(e).__name__ for e in events[1:]] == ["UserUpdated", "UserUpdated"]
        assert events[-1].email == "dora2@example.com" and events[-1].phone == "+44 20 7946 0000"


async def test_registration_records_exactly_one_event(service_client, api) -> None:
    async with service_client() as client:
        before = len(await _outbox(client))
        user = await api.register(client, "eve@example.com", phone="+1 555 0101")
        await client.post(
            "/auth/register", json={"email": "EVE@example.com", "password": "whatever-1", "full_name": "E"}
        )
        events = (await _outbox(client))[before:]
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, users_pb2.UserRegistered)
        assert (event.user_id, event.email, event.phone, event.role) == (
            user["id"],
            "eve@example.com",
            "+1 555 0101",
            users_pb2.ROLE_CUSTOMER,
        )


async def test_openapi_documents_auth_and_error_responses(service_client) -> None:
    async with service_client() as client:
        spec = (await client.get("/openapi.json")).json()
    expected = {
        ("post", "/auth/register"): {"409", "422"},
        ("post", "/auth/login"): {"401", "403", "422", "429"},
        ("post", "/auth/refresh"): {"401", "422"},
        ("post", "/auth/logout"): {"401", "422"},
        ("get", "/users/me"): {"401"},
        ("patch", "/users/me"): {"401", "403", "409", "422"},
        ("get", "/users"): {"401", "403", "422"},
        ("get", "/users/{user_id}"): {"401", "404", "422"},
        ("patch", "/users/{user_id}"): {"401", "403", "404", "409", "422"},
    }
    for (method, path), statuses in expected.items():
        op = spec["paths"][path][method]
        assert statuses <= set(op["responses"]), (method, path, set(op["responses"]))
        for status in statuses:
            assert "application/problem+json" in op["responses"][status]["content"], (method, path, status)
    secured = [
        ("get", "/users/me"),
        ("patch", "/users/me"),
        ("get", "/users"),
        ("get", "/users/{user_id}"),
        ("patch", "/users/{user_id}"),
    ]
    for method, path in secured:
        assert spec["paths"][path][method].get("security"), (method, path)
    assert "/.well-known/jwks.json" in spec["paths"]
    assert not any("password" in name for name in spec["components"]["schemas"]["UserPublic"]["properties"])
