"""Inventory HTTP API on both database backends: auth, validation, problem+json, lists and the audit trail."""

from __future__ import annotations

import uuid

import pytest
from mart.products.v1 import products_pb2

PROBLEM = "application/problem+json"


@pytest.fixture
async def api(service_client):
    async with service_client() as client:
        yield client


async def new_product(api) -> uuid.UUID:
    pid = uuid.uuid4()
    await api.feed(products_pb2.ProductCreated(product=products_pb2.Product(product_id=str(pid), version=1)))
    return pid


async def test_stock_is_public_and_adjustments_are_admin_only(api, jwt_keys):
    pid = await new_product(api)
    admin = jwt_keys.headers(uuid.uuid4(), "admin")
    customer = jwt_keys.headers(uuid.uuid4(), "customer")
    r = await api.get(f"/stock/{pid}")
    assert r.status_code == 200 and r.json() == {
        "product_id": str(pid),
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
    }
    for method, url, body in [
        ("POST", f"/stock/{pid}/adjustments", {"delta": 5, "reason": "delivery"}),
        ("GET", f"/stock/{pid}/adjustments", None),
        ("GET", "/stock?below=3", None),
    ]:
        r = await api.request(method, url, json=body)
        assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM), url
        r = await api.request(method, url, json=body, headers=customer)
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM), url
    r = await api.post(f"/stock/{pid}/adjustments", json={"delta": 5, "reason": "delivery"}, headers=admin)
    assert r.status_code == 201
    body = r.json()
    assert (body["kind"], body["delta"], body["reason"], body["on_hand_after"]) == (
        "adjustment",
        5,
        "delivery",
        5,
    )
    assert body["stock"]["available"] == 5


async def test_validation_and_errors(api, jwt_keys):
    pid = await new_product(api)
    admin = jwt_keys.headers(uuid.uuid4(), "admin")
    assert (await api.get("/stock/not-a-uuid")).status_code == 422
    r = await api.get(f"/stock/{uuid.uuid4()}")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    for bad in (
        {"delta": 0, "reason": "x"},
        {"delta": 1, "reason": ""},
        {"delta": 1},
        {"delta": "many", "reason": "x"},
        {"reason": "x"},
        {"delta": 1, "reason": "   "},
    ):
        r = await api.post(f"/stock/{pid}/adjustments", json=bad, headers=admin)
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), bad
    r = await api.post(f"/stock/{uuid.uuid4()}/adjustments", json={"delta": 1, "reason": "x"}, headers=admin)
    assert r.status_code == 404
    r = await api.post(f"/stock/{pid}/adjustments", json={"delta": -1, "reason": "x"}, headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("insufficient-stock")
    assert (await api.get(f"/stock/{uuid.uuid4()}/adjustments", headers=admin)).status_code == 404


async def test_low_stock_list_and_audit_trail_are_paginated(api, jwt_keys):
    admin = jwt_keys.headers(uuid.uuid4(), "admin")
    pids = [await new_product(api) for _ in range(4)]
    for n, pid in enumerate(pids):
        await api.post(
            f"/stock/{pid}/adjustments", json={"delta": n * 10 + 1, "reason": "count"}, headers=admin
        )
    page = (await api.get("/stock?below=15&limit=1", headers=admin)).json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 0)
    assert page["items"][0]["product_id"] == str(pids[0])
    page2 = (await api.get("/stock?below=15&limit=1&offset=1", headers=admin)).json()
    assert page2["items"][0]["product_id"] == str(pids[1])
    assert (await api.get("/stock", headers=admin)).json()["total"] == 4
    for i in range(3):
        await api.post(f"/stock/{pids[0]}/adjustments", json={"delta": 1, "reason": f"r{i}"}, headers=admin)
    trail = (await api.get(f"/stock/{pids[0]}/adjustments?limit=2", headers=admin)).json()
    assert trail["total"] == 4 and len(trail["items"]) == 2
    assert [m["on_hand_after"] for m in trail["items"]] == [4, 3]
    assert (await api.get("/stock?below=-1", headers=admin)).status_code == 422
