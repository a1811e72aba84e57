"""GET /payments, GET /payments/{id}, POST /payments/{id}/simulate: who sees what."""

from __future__ import annotations

import stat
import uuid

from payment_service.settings import PaymentSettings

FIELDS = {
    "id",
    "order_id",
    "amount_cents",
    "currency",
    "status",
    "provider",
    "client_secret",
    "checkout_url",
    "failure_reason",
    "attempts",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
}


async def test_requires_a_token(harness):
    pid = uuid.uuid4()
    assert (await harness.client.get("/payments")).status_code == 401
    assert (await harness.client.get(f"/payments/{pid}")).status_code == 401
    r = await harness.client.post(f"/payments/{pid}/simulate", json={"outcome": "succeeded"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_owner_sees_own_payment_others_get_404_admin_sees_all(harness):
    mine = await harness.wait_payment(await harness.order_awaiting_payment(total_cents=1500))
    stranger = uuid.uuid4()
    theirs = await harness.wait_payment(
        await harness.order_awaiting_payment(user_id=stranger, total_cents=2500)
    )

    r = await harness.client.get(f"/payments/{mine.id}", headers=harness.auth())
    assert r.status_code == 200
    body = r.json()
    assert set(body) == FIELDS
    assert body["status"] == "REQUIRES_PAYMENT" and body["amount_cents"] == 1500 and body["currency"] == "USD"
    assert body["client_secret"] == mine.client_secret and body["provider"] == "fake"

    assert (await harness.client.get(f"/payments/{theirs.id}", headers=harness.auth())).status_code == 404
    r = await harness.client.post(
        f"/payments/{theirs.id}/simulate", json={"outcome": "succeeded"}, headers=harness.auth()
    )
    assert r.status_code == 404

    page = (await harness.client.get("/payments", headers=harness.auth())).json()
    assert page["total"] == 1 and [p["id"] for p in page["items"]] == [str(mine.id)]
    assert page["limit"] == 20 and page["offset"] == 0
    r = await harness.client.get(
        "/payments", params={"order_id": str(theirs.order_id)}, headers=harness.auth()
    )
    assert r.json()["items"] == [] and r.json()["total"] == 0

    page = (await harness.client.get("/payments", headers=harness.admin)).json()
    assert page["total"] == 2
    r = await harness.client.get(
        "/payments", params={"order_id": str(theirs.order_id)}, headers=harness.admin
    )
    assert [p["id"] for p in r.json()["items"]] == [str(theirs.id)]
    assert (await harness.client.get(f"/payments/{theirs.id}", headers=harness.admin)).status_code == 200


async def test_simulate_outcomes_and_conflicts(harness):
    paid = await harness.wait_payment(await harness.order_awaiting_payment())
    r = await harness.client.post(
        f"/payments/{paid.id}/simulate", json={"outcome": "succeeded"}, headers=harness.auth()
    )
    assert r.status_code == 202, r.text
    assert r.json()["event_type"] == "payment_intent.succeeded" and r.json()["event_id"].startswith("evt_")
    assert r.json()["payment"]["status"] == "SUCCEEDED"
    again = await harness.client.post(
        f"/payments/{paid.id}/simulate", json={"outcome": "failed"}, headers=harness.auth()
    )
    assert again.status_code == 409
    assert (await harness.payment(paid.order_id)).status == "SUCCEEDED"

    failed = await harness.wait_payment(await harness.order_awaiting_payment())
    r = await harness.client.post(
        f"/payments/{failed.id}/simulate", json={"outcome": "failed"}, headers=harness.admin
    )
    assert r.status_code == 202
    assert r.json()["payment"]["status"] == "FAILED"
    assert r.json()["payment"]["failure_reason"] == "Your card was declined."

    bad = await harness.client.post(
        f"/payments/{failed.id}/simulate", json={"outcome": "maybe"}, headers=harness.auth()
    )
    assert bad.status_code == 422
    missing = await harness.client.post(
        f"/payments/{uuid.uuid4()}/simulate", json={"outcome": "succeeded"}, headers=harness.auth()
    )
    assert missing.status_code == 404


async def test_pagination_bounds(harness):
    assert (
        await harness.client.get("/payments", params={"limit": 101}, headers=harness.auth())
    ).status_code == 422
    assert (
        await harness.client.get("/payments", params={"order_id": "x"}, headers=harness.auth())
    ).status_code == 422


def test_fake_webhook_secret_is_generated_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    first = PaymentSettings(data_dir=tmp_path).resolved_webhook_secret()
    second = PaymentSettings(data_dir=tmp_path).resolved_webhook_secret()
    assert first == second and first.startswith("whsec_")
    [key_file] = (tmp_path / "keys").iterdir()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_stripe_provider_needs_its_credentials(tmp_path, monkeypatch):
    import pytest
    from payment_service.providers import build_provider

    for var in ("STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="STRIPE_WEBHOOK_SECRET"):
        build_provider(PaymentSettings(data_dir=tmp_path, payment_provider="stripe"))
    with pytest.raises(ValueError, match="STRIPE_API_KEY"):
        build_provider(
            PaymentSettings(data_dir=tmp_path, payment_provider="stripe", stripe_webhook_secret="whsec_x")
        )
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_env")
    monkeypatch.setenv("MART_PAYMENT_PROVIDER", "stripe")
    provider = build_provider(PaymentSettings(data_dir=tmp_path))
    assert provider.name == "stripe" and provider.webhook_secret == "whsec_env"
