"""The mart's end-state invariants, read from the services' PostgreSQL databases and the Kafka topics.

Shared by the fault suites (``test_faults.py``, ``test_replicas.py``): each takes ``dsn_of(package)`` (a
plain ``postgresql://`` DSN of that service's database) and, for the broker checks, a started ``KafkaBus``.
What each invariant means, and why it must hold, is in docs/reliability.md ("The fault suite").
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from mart_common.bus.kafka import KafkaBus
from mart_testkit.fake_stripe import FakeStripeAPI

from mart_cli.services import SERVICES
from mart_common import contracts

FINAL = {"REJECTED", "CANCELLED", "DELIVERED", "PAID", "SHIPPED"}
PAID_LIKE = {"PAID", "SHIPPED", "DELIVERED"}
CLOSED = {"CANCELLED", "REJECTED"}  # no money may stay with the mart, no payment may stay open

DsnOf = Callable[[str], str]

# ce_type -> consumer groups that handle it: the handler tables of the services (HANDLERS in each
# <svc>/handlers.py). test_subscriptions_table_matches_the_handlers keeps it honest.
SUBSCRIPTIONS: dict[str, set[str]] = {
    "mart.users.v1.UserRegistered": {"notification-service"},
    "mart.users.v1.UserUpdated": {"notification-service"},
    "mart.products.v1.ProductCreated": {"inventory-service", "order-service"},
    "mart.products.v1.ProductUpdated": {"order-service"},
    "mart.products.v1.ProductArchived": {"order-service"},
    "mart.stock.v1.StockReserved": {"order-service"},
    "mart.stock.v1.StockRejected": {"order-service"},
    "mart.orders.v1.OrderPlaced": {"inventory-service", "notification-service"},
    "mart.orders.v1.OrderAwaitingPayment": {"payment-service"},
    "mart.orders.v1.OrderPaid": {"inventory-service", "notification-service"},
    "mart.orders.v1.OrderRejected": {"notification-service"},
    "mart.orders.v1.OrderCancelled": {"inventory-service", "payment-service", "notification-service"},
    "mart.orders.v1.OrderShipped": {"notification-service"},
    "mart.orders.v1.OrderDelivered": {"notification-service"},
    "mart.payments.v1.PaymentSucceeded": {"order-service"},
    "mart.payments.v1.PaymentFailed": {"order-service"},
    "mart.payments.v1.PaymentRefunded": {"notification-service"},
}
# Services whose code consumes no event (an empty HANDLERS table).
CONSUMES_NOTHING = {"user_service", "product_service"}


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class Snapshot:
    """The databases' state and every invariant violation found in it (empty lists = all hold)."""

    orders: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    status_of: dict[str, str] = field(default_factory=dict)
    cancelled_after_paid: int = 0
    stock_mismatches: dict[str, Any] = field(default_factory=dict)
    unpublished: dict[str, int] = field(default_factory=dict)
    # every PAID/SHIPPED/DELIVERED order has exactly one SUCCEEDED payment
    paid_without_one_succeeded_payment: list[str] = field(default_factory=list)
    # every CANCELLED-after-PAID order: payment REFUNDED, reservation RESTOCKED, a restock movement per line
    cancelled_paid_not_refunded: list[str] = field(default_factory=list)
    cancelled_paid_not_restocked: list[str] = field(default_factory=list)
    # a SUCCEEDED payment whose order is not paid; a REFUNDED payment whose order is not CANCELLED
    charged_not_paid: list[str] = field(default_factory=list)
    refunded_not_cancelled: list[str] = field(default_factory=list)
    # a cancelled or rejected order whose payment is still open (CREATING, REQUIRES_PAYMENT, REFUND_PENDING)
    open_payment_on_closed_order: list[str] = field(default_factory=list)

    def violations(self) -> dict[str, Any]:
        found = {
            "stock mismatches": self.stock_mismatches,
            "outbox rows unpublished": {k: v for k, v in self.unpublished.items() if v},
            "paid orders without exactly one SUCCEEDED payment": self.paid_without_one_succeeded_payment,
            "cancelled-after-paid orders not refunded": self.cancelled_paid_not_refunded,
            "cancelled-after-paid orders whose units are not back on hand": self.cancelled_paid_not_restocked,
            "SUCCEEDED payments whose order is not paid": self.charged_not_paid,
            "REFUNDED payments whose order is not cancelled": self.refunded_not_cancelled,
            "open payments of cancelled or rejected orders": self.open_payment_on_closed_order,
        }
        return {k: v for k, v in found.items() if v}

    def settled(self) -> bool:
        """Nothing in flight (no PENDING order) and every invariant holds."""
        return self.by_status.get("PENDING", 0) == 0 and not self.violations()


async def snapshot(dsn_of: DsnOf, initial: dict[str, int]) -> Snapshot:
    """Read the six databases; ``initial`` = product id -> units put on hand by the test."""
    orders = await fetch(dsn_of("order_service"), "SELECT id, status, items, history FROM orders")
    inventory = dsn_of("inventory_service")
    stock = await fetch(inventory, "SELECT product_id, on_hand, reserved FROM stock")
    reservations = await fetch(inventory, "SELECT order_id, status FROM reservations")
    restocks = await fetch(
        inventory, "SELECT order_id, product_id, delta FROM stock_movements WHERE kind = 'restock'"
    )
    payments = await fetch(dsn_of("payment_service"), "SELECT order_id, status FROM payments")

    snap = Snapshot(orders=len(orders))
    snap.by_status = dict(Counter(r["status"] for r in orders))
    snap.status_of = {str(r["id"]): r["status"] for r in orders}
    expected_on_hand = dict(initial)
    expected_reserved = dict.fromkeys(initial, 0)
    payments_of: dict[str, list[str]] = defaultdict(list)
    for p in payments:
        payments_of[str(p["order_id"])].append(p["status"])
    reservation_of = {str(r["order_id"]): r["status"] for r in reservations}
    restocked: dict[str, Counter] = defaultdict(Counter)
    for m in restocks:
        restocked[str(m["order_id"])][str(m["product_id"])] += int(m["delta"])

    for r in orders:
        oid, status = str(r["id"]), r["status"]
        items = _json(r["items"])
        quantities: Counter = Counter()
        for it in items:
            quantities[str(it["product_id"])] += int(it["quantity"])
        for pid, qty in quantities.items():
            if pid not in initial:
                continue
            if status in PAID_LIKE:
                expected_on_hand[pid] -= qty
            elif status == "AWAITING_PAYMENT":
                expected_reserved[pid] += qty
        if status in PAID_LIKE and payments_of.get(oid, []).count("SUCCEEDED") != 1:
            snap.paid_without_one_succeeded_payment.append(f"{oid}: {payments_of.get(oid, [])}")
        was_paid = any(h.get("status") == "PAID" for h in _json(r["history"]) or [])
        if status == "CANCELLED" and was_paid:
            snap.cancelled_after_paid += 1
            if payments_of.get(oid) != ["REFUNDED"]:
                snap.cancelled_paid_not_refunded.append(f"{oid}: {payments_of.get(oid, [])}")
            if reservation_of.get(oid) != "RESTOCKED" or restocked.get(oid) != quantities:
                snap.cancelled_paid_not_restocked.append(
                    f"{oid}: reservation {reservation_of.get(oid)}, restocked {dict(restocked.get(oid, {}))}"
                    f" of {dict(quantities)}"
                )
    for oid, statuses in payments_of.items():
        if "SUCCEEDED" in statuses and snap.status_of.get(oid) not in PAID_LIKE:
            snap.charged_not_paid.append(f"{oid}: order {snap.status_of.get(oid)}")
        if "REFUNDED" in statuses and snap.status_of.get(oid) != "CANCELLED":
            snap.refunded_not_cancelled.append(f"{oid}: order {snap.status_of.get(oid)}")
        if snap.status_of.get(oid) in CLOSED and not set(statuses) <= {"FAILED", "REFUNDED"}:
            snap.open_payment_on_closed_order.append(
                f"{oid}: order {snap.status_of[oid]}, payments {statuses}"
            )

    actual = {str(r["product_id"]): (r["on_hand"], r["reserved"]) for r in stock}
    snap.stock_mismatches = {
        pid: {"actual": actual.get(pid), "expected": (expected_on_hand[pid], expected_reserved[pid])}
        for pid in initial
        if actual.get(pid) != (expected_on_hand[pid], expected_reserved[pid])
        or expected_on_hand[pid] < 0
        or expected_reserved[pid] > expected_on_hand[pid]
    }
    for svc in SERVICES:
        rows = await fetch(dsn_of(svc.package), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        snap.unpublished[svc.name] = rows[0]["n"]
    return snap


async def events_lost(dsn_of: DsnOf) -> tuple[int, int, list[str]]:
    """Outbox events whose subscribed consumers have no inbox row for them: (checked, lost, examples)."""
    inbox: dict[str, set[str]] = {}
    for svc in SERVICES:
        for r in await fetch(dsn_of(svc.package), "SELECT consumer, event_id FROM inbox"):
            inbox.setdefault(r["consumer"], set()).add(r["event_id"])
    checked, lost, examples = 0, 0, []
    for svc in SERVICES:
        for r in await fetch(dsn_of(svc.package), "SELECT event_id, ce_type FROM outbox"):
            for group in SUBSCRIPTIONS.get(r["ce_type"], ()):
                checked += 1
                if r["event_id"] not in inbox.get(group, set()):
                    lost += 1
                    if len(examples) < 5:
                        examples.append(f"{r['ce_type']} {r['event_id']} not in {group}'s inbox")
    return checked, lost, examples


@dataclass
class BrokerFacts:
    """What the topics say: charges and refunds per order, duplicates published, dead letters."""

    charged_orders: int = 0
    charged_twice: list[str] = field(default_factory=list)  # > 1 distinct PaymentSucceeded per order
    refunded_twice: list[str] = field(default_factory=list)  # > 1 distinct PaymentRefunded per order
    records: int = 0
    duplicate_records: int = 0  # records whose event id was already on the topic (republished)
    dead_letters: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: list[str] = field(default_factory=list)


async def broker_facts(bus: KafkaBus) -> BrokerFacts:
    facts = BrokerFacts()
    charges: dict[str, set[str]] = defaultdict(set)
    refunds: dict[str, set[str]] = defaultdict(set)
    for topic in contracts.TOPICS:
        seen: Counter = Counter()
        for rec in await bus.read_topic(topic):
            facts.records += 1
            ce_id, ce_type = rec.header("ce_id") or "", rec.header("ce_type")
            seen[ce_id] += 1
            if ce_type == "mart.payments.v1.PaymentSucceeded":
                charges[contracts.decode(ce_type, rec.value).order_id].add(ce_id)
            elif ce_type == "mart.payments.v1.PaymentRefunded":
                refunds[contracts.decode(ce_type, rec.value).order_id].add(ce_id)
        facts.duplicate_records += sum(n - 1 for n in seen.values())
    facts.charged_orders = len(charges)
    facts.charged_twice = [oid for oid, ids in charges.items() if len(ids) > 1]
    facts.refunded_twice = [oid for oid, ids in refunds.items() if len(ids) > 1]
    for svc in SERVICES:
        letters = await bus.dead_letters(svc.name)
        facts.dead_letters[svc.name] = len(letters)
        facts.dead_letter_reasons += [
            f"{svc.name}: {m.header('ce_type')} {m.header('dlq_reason')}" for m in letters
        ]
    return facts


def duplicates_absorbed(log_dir: Path) -> dict[str, int]:
    """Per service: deliveries its inbox recognised as already applied (``duplicate_event_ignored`` lines)."""
    out = {}
    for svc in SERVICES:
        path = log_dir / f"{svc.package}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        out[svc.name] = len(re.findall(r"duplicate_event_ignored", text))
    return out


async def money_at_the_provider(
    dsn_of: DsnOf, stripe: FakeStripeAPI, status_of: dict[str, str]
) -> dict[str, Any]:
    """What the payment provider saw (a ``FakeStripeAPI``): PaymentIntents created, charges, refunds, held
    against the payments and the orders' final states. Every list must be empty; the counts say how much
    was checked."""
    rows = await fetch(dsn_of("payment_service"), "SELECT order_id, provider_payment_id FROM payments")
    recorded = {r["provider_payment_id"]: str(r["order_id"]) for r in rows if r["provider_payment_id"]}
    order_of = {i["id"]: i["metadata"].get("order_id", "") for i in stripe.created_intents()}
    intents_per_order = Counter(order_of.values())
    charges = Counter(stripe.charges())
    refunds = Counter(r["payment_intent"] for r in stripe.created_refunds())
    kept, refunded_yet_paid = [], []
    for intent in charges:
        status = status_of.get(order_of.get(intent, ""))
        if status in PAID_LIKE and refunds[intent]:
            refunded_yet_paid.append(f"{order_of[intent]}: {status}, refunded")
        elif status not in PAID_LIKE and refunds[intent] != 1:
            kept.append(f"{order_of.get(intent)}: {status}, charged, {refunds[intent]} refunds")
    create_requests = Counter(r.idempotency_key for r in stripe.sent("create"))
    return {
        "intents created": len(order_of),
        "charges": sum(charges.values()),
        "refunds": sum(refunds.values()),
        "create requests per order (max; retries and replicas, one idempotency key)": max(
            create_requests.values(), default=0
        ),
        "orders with more than one PaymentIntent": [o for o, n in intents_per_order.items() if n > 1],
        "intents the payments do not record (or record for another order)": [
            i for i, o in order_of.items() if recorded.get(i) != o
        ],
        "payments whose intent the provider never created": [i for i in recorded if i not in order_of],
        "intents charged more than once": [i for i, n in charges.items() if n > 1],
        "intents refunded more than once": [i for i, n in refunds.items() if n > 1],
        "refunds of intents never charged": [i for i in refunds if i not in charges],
        "charges of intents the mart never created": [i for i in charges if i not in order_of],
        "money kept for an order that is not paid (cancelled, rejected, failed)": kept,
        "paid orders whose money went back": refunded_yet_paid,
    }
