"""Two replicas of every service under checkout load (docs/scaling.md): crashes and a rolling restart.

The mart runs as ``mart dist up --replicas 2 --gateway`` would run it (the same launcher, ``mart_cli.dist``):
twelve uvicorn processes started at the same moment on six fresh, EMPTY PostgreSQL databases (so the two
replicas of each service migrate concurrently), the shared Kafka broker with a fresh namespace, and the
built-in gateway spreading requests round robin. While the fault suite's load generator places, pays, fails
and cancels orders through the gateway, the test:

1. ``kill -9`` one replica of each service in turn (replica 1, 2, 1, ...), checks that the service still
   answers through the gateway while that replica is dead, and starts the replica again;
2. restarts every replica gracefully (SIGTERM), one replica of each service at a time (a rolling restart),
   after which ``mart dist status`` (``dist.status``) sees all twelve replicas and the gateway ready.

Then, once the system has settled, the fault suite's saga invariants (tests/faults/test_faults.py) plus:

- migrations ran once: one ``Running upgrade`` per revision per service across both replicas' logs, and
  both replicas came up on the empty database;
- each outbox row is on the broker, and only once per relay commit window: an extra copy exists only for a
  service whose relay was killed, sent within that kill's window (none during the graceful restarts), at
  most one batch per kill, and every such copy was absorbed by the subscribers' inboxes (counted:
  ``duplicate_event_ignored`` in the logs);
- no two relays published the same rows concurrently: per partition, copies of rows already on the broker
  come in at most one run per kill of that service (the interrupted batch, re-published once);
- per-key order: every consumer applied the events of each key (an order, a product) in outbox order;
- no event handled twice: no order status entered twice, one sale movement per paid order line, no inbox
  row for an event that was never published;
- the money, at the provider: both payment replicas talk to a Stripe-like API (``FakeStripeAPI``, the real
  ``stripe`` SDK on their side) and customers pay by a signed Stripe event to ``POST /webhook`` through the
  gateway. One PaymentIntent per order however many replicas and retries called the provider, one charge
  and at most one refund per intent, and no money kept for a cancelled or rejected order.

Figures are printed in the terminal summary and written to ``<tmp>/replica-summary.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from mart_common.bus.kafka import KafkaBus, partitions_of
from mart_common.polling import PollTimeout, wait_until
from mart_testkit.fake_stripe import FakeStripeAPI
from mart_testkit.stack import DistributedStack, OnStack, distributed_stack
from payment_service.providers import FakeProvider

from mart_cli import dist
from mart_cli.services import SERVICES, Endpoints, Service

from . import invariants
from . import test_faults as faults  # the fault suite's load generator and helpers (shared, not copied)

LOAD_RATE = float(os.environ.get("MART_REPLICAS_RATE", "4"))  # orders per second
REPLICAS = 2
SETTLE_TIMEOUT_S = 120.0
KILL_WINDOW_S = 30.0  # a killed relay's batch is re-published by the other replica within this
BATCH_SIZE = 200  # ServiceSettings.outbox_batch_size: the most rows one relay commit window publishes
REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_replica_suite"  # noqa: S105 - a test's own webhook secret


def say(msg: str) -> None:
    print(f"[replicas {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: T201


@dataclass
class SharedBroker:
    bootstrap: str = os.environ.get("MART_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@dataclass
class ReplicaCluster(OnStack):
    stack: DistributedStack
    broker: SharedBroker
    kills: Counter = field(default_factory=Counter)  # service name -> kill -9 count
    graceful: Counter = field(default_factory=Counter)
    # service name -> (from, to) wall-clock windows in which a relay of that service may have been killed
    # mid-batch (from the kill until the rolling restart begins, at most KILL_WINDOW_S)
    kill_windows: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    stripe: FakeStripeAPI | None = None  # the payment provider both payment replicas call

    def inst(self, svc: Service, replica: int) -> dist.Instance:
        return dist.instance(self.cfg, svc, replica)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaCluster]:
    with (
        FakeStripeAPI() as stripe,
        distributed_stack(
            tmp_path_factory.mktemp("replicas") / "data",
            namespace="r",
            kafka_bootstrap=SharedBroker().bootstrap,
            replicas=REPLICAS,  # all twelve started at once, on empty databases
            gateway=True,
            extra_env={
                "MART_LOG_JSON": "true",
                "MART_OUTBOX_POLL_INTERVAL_S": "0.2",
                # Both payment replicas on the real stripe SDK, pointed at the test's Stripe-like API.
                "MART_PAYMENT_PROVIDER": "stripe",
                "STRIPE_API_KEY": "sk_test_replicas",
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "MART_STRIPE_API_BASE": stripe.url,
                "MART_STRIPE_TIMEOUT_S": "5",
                "MART_PROVIDER_RETRY_BASE_S": "0.2",
                "MART_PROVIDER_RETRY_MAX_S": "2",
            },
            keep=os.environ.get("MART_FAULTS_KEEP") == "1",
        ) as stack,
    ):
        say(f"{len(stack.cfg.instances())} replicas and the gateway ready in {stack.ready_s:.1f}s")
        yield ReplicaCluster(stack=stack, broker=SharedBroker(), stripe=stripe)


# --- faults ----------------------------------------------------------------------------------------


async def _answers_through_gateway(cluster: ReplicaCluster, svc: Service) -> bool:
    """The service answers /ready through the gateway (the surviving replica; first attempt counts)."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(cluster.ep.url(svc.package, "/ready"))
    return r.status_code == 200


async def kill_one_replica_of_each(cluster: ReplicaCluster, timings: dict[str, float], served: dict) -> None:
    loop = asyncio.get_running_loop()
    restarted = []
    for i, svc in enumerate(SERVICES):
        inst = cluster.inst(svc, 1 + i % REPLICAS)
        pid = await loop.run_in_executor(
            None, lambda i=inst: dist.stop_instance(cluster.cfg, i, graceful=False)
        )
        assert pid is not None, f"{inst.label} was not running"
        cluster.kills[svc.name] += 1
        cluster.kill_windows[svc.name].append((time.time() - 1.0, time.time() + KILL_WINDOW_S))
        served[svc.name] = await _answers_through_gateway(cluster, svc)
        say(f"kill -9 {inst.label} (pid {pid}); {svc.name} answers through the gateway: {served[svc.name]}")
        await asyncio.sleep(0.5)
        await loop.run_in_executor(
            None, lambda i=inst: dist.start_instance(cluster.cfg, i, say=lambda _m: None)
        )
        restarted.append(inst)
        await asyncio.sleep(1.0)
    begun = time.monotonic()
    await loop.run_in_executor(
        None, lambda: dist.wait_ready(cluster.cfg, timeout=120, say=lambda _m: None, only=restarted)
    )
    timings["killed replicas ready again after the last kill"] = time.monotonic() - begun


async def rolling_restart(cluster: ReplicaCluster, timings: dict[str, float]) -> None:
    """Replica 1 of every service (gracefully), ready again; then replica 2: one replica per service at a
    time, so each service always has one replica serving."""
    loop = asyncio.get_running_loop()
    for k in range(1, REPLICAS + 1):
        begun = time.monotonic()
        wave = [cluster.inst(svc, k) for svc in SERVICES]
        stops = [loop.run_in_executor(None, lambda i=i: dist.stop_instance(cluster.cfg, i)) for i in wave]
        stopped = await asyncio.gather(*stops)
        assert all(pid is not None for pid in stopped), stopped
        for inst in wave:
            cluster.graceful[inst.svc.name] += 1
            dist.start_instance(cluster.cfg, inst, say=lambda _m: None)
        await loop.run_in_executor(
            None, lambda w=wave: dist.wait_ready(cluster.cfg, timeout=120, say=lambda _m: None, only=w)
        )
        timings[f"rolling restart, replica {k} of each service"] = time.monotonic() - begun
        say(f"rolling restart: replica {k} of every service back in {time.monotonic() - begun:.1f}s")


async def kill_payment_with_a_refund_pending(cluster: ReplicaCluster, timings: dict[str, float]) -> int:
    """Refunds fail at the provider until a paid order's refund is pending; then ``kill -9`` of both payment
    replicas; the provider recovers and the replicas start again. Returns the refunds pending at the kill."""
    assert cluster.stripe is not None
    loop = asyncio.get_running_loop()
    svc = next(s for s in SERVICES if s.package == "payment_service")
    cluster.stripe.fail("refund", 500)
    begun = time.monotonic()

    async def pending() -> int:
        rows = await faults._fetch(
            cluster, svc.package, "SELECT count(*) AS n FROM payments WHERE status = 'REFUND_PENDING'"
        )
        return int(rows[0]["n"])

    while (waiting := await pending()) == 0:
        assert time.monotonic() - begun < 90, "no refund became pending (no paid order was cancelled)"
        await asyncio.sleep(0.5)
    replicas = [cluster.inst(svc, k) for k in range(1, REPLICAS + 1)]
    killed_at = time.time()
    for inst in replicas:
        await loop.run_in_executor(None, lambda i=inst: dist.stop_instance(cluster.cfg, i, graceful=False))
        cluster.kills[svc.name] += 1
    say(f"kill -9 of both payment replicas with {waiting} refund(s) pending at the provider")
    cluster.stripe.heal("refund")
    for inst in replicas:
        await loop.run_in_executor(
            None, lambda i=inst: dist.start_instance(cluster.cfg, i, say=lambda _m: None)
        )
    await loop.run_in_executor(
        None, lambda: dist.wait_ready(cluster.cfg, timeout=120, say=lambda _m: None, only=replicas)
    )
    # No replica survived to republish the interrupted batch: the restarted ones do, once they run.
    window = (killed_at - 1.0, time.time() + KILL_WINDOW_S)
    cluster.kill_windows[svc.name] += [window] * REPLICAS
    timings["payment replicas killed with refunds pending: back in"] = time.monotonic() - begun
    return waiting


async def status_when_all_ready(cluster: ReplicaCluster, timeout: float = 30.0) -> dict[str, Any]:
    """``mart dist status`` until it sees every replica and the gateway ready, or ``timeout`` seconds; the
    last status. Replicas just restarted under load may answer ``/ready`` late or busy for a moment."""
    loop = asyncio.get_running_loop()
    expected = {i.label for i in cluster.cfg.instances()} | {"gateway"}

    def all_ready(status: dict[str, Any]) -> bool:
        return {k for k, v in status.items() if v["ready"] is True} == expected

    async def read() -> dict[str, Any]:
        return await loop.run_in_executor(None, dist.status, cluster.cfg)

    try:
        return await wait_until(read, until=all_ready, timeout=timeout, interval=1.0)
    except PollTimeout as exc:
        return exc.last  # the caller's assertion shows it


# --- the replica-specific invariants ---------------------------------------------------------------


async def migrations_once(cluster: ReplicaCluster) -> dict[str, Any]:
    """Per service: revisions on disk, upgrades run (both replicas' logs), alembic_version rows."""
    out: dict[str, Any] = {}
    for svc in SERVICES:
        versions = REPO / svc.package / "src" / svc.package / "migrations" / "versions"
        revisions = len([f for f in versions.glob("*.py") if f.name != "__init__.py"])
        ran = sum(1 for line in cluster.stack.log_lines(svc) if "Running upgrade" in line)
        rows = await faults._fetch(cluster, svc.package, "SELECT version_num FROM alembic_version")
        out[svc.name] = {"revisions": revisions, "upgrades_run": ran, "alembic_version_rows": len(rows)}
    return out


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: float  # the producer's send time (CreateTime), seconds since the epoch
    ce_id: str


async def broker_records(cluster: ReplicaCluster, topics: set[str]) -> list[Record]:
    """Every record of ``topics`` in the test's namespace, with the time it was sent."""
    ns = cluster.cfg.kafka_namespace
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Record] = []
    try:
        tps = await partitions_of(consumer, [ns + t for t in sorted(topics)])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    if rec.offset < end[tp]:
                        headers = dict(rec.headers or ())
                        out.append(
                            Record(
                                tp.topic.removeprefix(ns),
                                rec.partition,
                                rec.offset,
                                rec.timestamp / 1000,
                                (headers.get("ce_id") or b"").decode(),
                            )
                        )
        return out
    finally:
        await consumer.stop()


async def publication_checks(cluster: ReplicaCluster) -> dict[str, Any]:
    """Outbox rows vs the broker: copies per row, re-published batches per partition, phantoms."""
    outbox: dict[str, tuple[str, int, str, str]] = {}  # event_id -> (service, seq, topic, key)
    for svc in SERVICES:
        rows = await faults._fetch(cluster, svc.package, "SELECT event_id, seq, topic, key FROM outbox")
        for r in rows:
            outbox[r["event_id"]] = (svc.name, r["seq"], r["topic"], r["key"])
    records = await broker_records(cluster, {v[2] for v in outbox.values()})
    copies = Counter(rec.ce_id for rec in records)
    missing = [e for e in outbox if copies[e] == 0]
    phantoms = [e for e in copies if e not in outbox]
    duplicated_rows: Counter = Counter()  # service -> rows published more than once
    extra_copies: Counter = Counter()
    for event_id, n in copies.items():
        if n > 1 and event_id in outbox:
            duplicated_rows[outbox[event_id][0]] += 1
            extra_copies[outbox[event_id][0]] += n - 1
    # Per partition, per producing service: runs of copies already on the broker. An interrupted relay batch
    # re-published after a kill -9 makes one run; two relays publishing the same rows side by side would
    # interleave copies and first copies again and again. (Outbox seq order alone proves nothing here:
    # transactions commit in another order than they draw their seq, on one replica as well.)
    runs: Counter = Counter()  # (service, topic, partition) -> runs of re-published copies
    outside_kill_windows: Counter = Counter()  # service -> copies sent while none of its relays was killed
    seen: set[str] = set()
    previous_was_copy: dict[tuple[str, str, int], bool] = {}
    for rec in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        event_id = rec.ce_id
        found = outbox.get(event_id)
        if found is None:
            continue
        where = (found[0], rec.topic, rec.partition)
        copy = event_id in seen
        seen.add(event_id)
        if copy and not previous_was_copy.get(where, False):
            runs[where] += 1
        previous_was_copy[where] = copy
        if copy and not any(start <= rec.timestamp <= end for start, end in cluster.kill_windows[found[0]]):
            outside_kill_windows[found[0]] += 1
    return {
        "outbox_rows": len(outbox),
        "broker_records": len(records),
        "rows_missing_on_broker": len(missing),
        "broker_records_without_outbox_row": len(phantoms),
        "rows_published_more_than_once": dict(duplicated_rows),
        "extra_copies": dict(extra_copies),
        "republished_batches": {f"{s} {t}[{p}]": n for (s, t, p), n in runs.items()},
        "extra copies sent outside a kill -9 window (graceful restarts: expected 0)": dict(
            outside_kill_windows
        ),
        "_runs": runs,
        "_outbox": outbox,
    }


async def order_checks(
    cluster: ReplicaCluster, outbox: dict[str, tuple[str, int, str, str]]
) -> dict[str, Any]:
    """Per-key order of every consumer, and effects applied once."""
    out_of_order: list[str] = []
    keys_checked = 0
    unpublished_in_inbox = 0
    for svc in SERVICES:
        rows = await faults._fetch(
            cluster, svc.package, "SELECT consumer, event_id, processed_at FROM inbox ORDER BY processed_at"
        )
        per_key: dict[tuple[str, str], list[tuple[Any, int, str]]] = defaultdict(list)
        for r in rows:
            src = outbox.get(r["event_id"])
            if src is None:
                unpublished_in_inbox += 1
                continue
            per_key[(src[2], src[3])].append((r["processed_at"], src[1], r["event_id"]))
        for (topic, key), events in per_key.items():
            keys_checked += 1
            seqs = [seq for _at, seq, _e in sorted(events)]
            if seqs != sorted(seqs) and len(out_of_order) < 10:
                out_of_order.append(f"{svc.name}: {topic} key {key} applied in seq order {seqs}")
    orders = await faults._fetch(cluster, "order_service", "SELECT id, status, items, history FROM orders")
    status_twice = []
    for r in orders:
        history = r["history"] if isinstance(r["history"], list) else json.loads(r["history"])
        seen = Counter(h["status"] for h in history)
        if any(n > 1 for n in seen.values()):
            status_twice.append(f"{r['id']}: {dict(seen)}")
    sales = await faults._fetch(
        cluster,
        "inventory_service",
        "SELECT order_id, product_id, count(*) AS n FROM stock_movements WHERE kind = 'sale'"
        " GROUP BY order_id, product_id HAVING count(*) > 1",
    )
    absorbed = {
        svc.name: sum(1 for line in cluster.stack.log_lines(svc) if "duplicate_event_ignored" in line)
        for svc in SERVICES
    }
    return {
        "keys checked for per-key order (consumer x key)": keys_checked,
        "keys applied out of order": len(out_of_order),
        "_out_of_order": out_of_order,
        "inbox rows for events never in an outbox": unpublished_in_inbox,
        "orders with a status entered twice": len(status_twice),
        "_status_twice": status_twice[:5],
        "sale movements applied twice": len(sales),
        "redeliveries absorbed by the inbox (duplicate_event_ignored)": absorbed,
    }


# --- paying -----------------------------------------------------------------------------------------


@dataclass
class StripeCustomer:
    """Pays as with Stripe: the PaymentIntent is charged at the provider, then Stripe's signed event goes to
    ``POST /webhook`` through the gateway (retried as Stripe retries a webhook: same event, same id)."""

    stripe: FakeStripeAPI | None

    async def __call__(
        self,
        client: httpx.AsyncClient,
        ep: Endpoints,
        auth: dict[str, str],
        payment: dict,
        outcome: str,
        stats: Counter,
    ) -> httpx.Response | None:
        assert self.stripe is not None
        intent = (payment.get("client_secret") or "").split("_secret_")[0]
        if outcome == "succeeded":
            self.stripe.charge(intent)
        _event_id, payload, signature = FakeProvider(WEBHOOK_SECRET).build_event(
            outcome=outcome,
            provider_payment_id=intent,
            payment_id=uuid.UUID(payment["id"]),
            order_id=uuid.UUID(payment["order_id"]),
            amount_cents=payment["amount_cents"],
            currency=payment["currency"],
        )
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        return await faults._retrying(
            lambda: client.post(ep.payment("/webhook"), content=payload, headers=headers), stats, "webhook"
        )


# --- the test --------------------------------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.faults
@pytest.mark.distributed
@pytest.mark.postgres
@pytest.mark.kafka
async def test_two_replicas_survive_crashes_and_a_rolling_restart(
    cluster: ReplicaCluster, tmp_path: Path, fault_report: list[str]
) -> None:
    random.seed(20261129)
    started = time.monotonic()
    timings: dict[str, float] = {}
    migrations = await migrations_once(cluster)
    async with httpx.AsyncClient(timeout=30) as client:
        _admin, tokens, products, initial = await faults._setup_catalog(client, cluster)
    load = faults.Load(pay=StripeCustomer(cluster.stripe))
    generator = asyncio.create_task(faults.load_generator(cluster, tokens, products, load, LOAD_RATE))
    served_while_down: dict[str, bool] = {}
    await asyncio.sleep(3)
    try:
        await kill_one_replica_of_each(cluster, timings, served_while_down)
        await asyncio.sleep(2)
        rolling_begins = time.time()
        for name, windows in cluster.kill_windows.items():
            cluster.kill_windows[name] = [(a, min(b, rolling_begins)) for a, b in windows]
        await rolling_restart(cluster, timings)
        refunds_pending_at_kill = await kill_payment_with_a_refund_pending(cluster, timings)
        status = await status_when_all_ready(cluster)
        await asyncio.sleep(3)
    finally:
        load.running = False
        await generator
    say(
        f"load stopped after {time.monotonic() - started:.0f}s; "
        f"{load.stats['placed']} orders placed; settling"
    )

    begun = time.monotonic()
    while True:
        snap = await invariants.snapshot(cluster.db_dsn, initial)
        checked, lost, lost_examples = await invariants.events_lost(cluster.db_dsn)
        if (snap.settled() and lost == 0) or time.monotonic() - begun > SETTLE_TIMEOUT_S:
            break
        await asyncio.sleep(1.0)
    timings["settled after load stopped"] = time.monotonic() - begun
    bus = KafkaBus(cluster.broker.bootstrap, namespace=cluster.cfg.kafka_namespace)
    await bus.start()
    try:
        broker = await invariants.broker_facts(bus)
    finally:
        await bus.stop()
    violations = snap.violations()
    not_final = {k: v for k, v in snap.by_status.items() if k not in invariants.FINAL | {"AWAITING_PAYMENT"}}
    missing = [oid for oid in load.placed if oid not in snap.status_of]
    pub = await publication_checks(cluster)
    order = await order_checks(cluster, pub["_outbox"])
    assert cluster.stripe is not None
    money = await invariants.money_at_the_provider(cluster.db_dsn, cluster.stripe, snap.status_of)
    async with httpx.AsyncClient(timeout=10) as client:
        for svc in SERVICES:  # a few requests to every service, so that the quiet ones are counted too
            for _ in range(2 * REPLICAS):
                assert (await client.get(cluster.ep.url(svc.package, "/health"))).status_code == 200
        gateway = (await client.get(f"http://{cluster.cfg.host}:{cluster.cfg.gateway_port}/")).json()
    spread = {name: s["targets"] for name, s in gateway["services"].items()}

    summary = {
        "replicas per service": REPLICAS,
        "orders placed (201)": load.stats["placed"],
        "orders in the database": snap.orders,
        "orders by status": dict(sorted(snap.by_status.items())),
        "orders neither final nor AWAITING_PAYMENT": sum(not_final.values()),
        "invariant violations (databases)": violations,
        "orders charged twice (broker: >1 distinct PaymentSucceeded)": len(broker.charged_twice),
        "orders charged (PaymentSucceeded events)": broker.charged_orders,
        "events lost": lost,
        "event deliveries checked": checked,
        "dead letters (expected 0)": sum(broker.dead_letters.values()),
        "orders acknowledged but missing": len(missing),
        "migrations (per service)": migrations,
        **{k: v for k, v in pub.items() if not k.startswith("_")},
        **{k: v for k, v in order.items() if not k.startswith("_")},
        "payment provider (both payment replicas)": money,
        "refunds pending at the provider when both payment replicas were killed": refunds_pending_at_kill,
        "kill -9 per service": dict(cluster.kills),
        "graceful restarts per service": dict(cluster.graceful),
        "answered through the gateway while a replica was dead": served_while_down,
        "requests per replica (gateway)": spread,
        "load client retries": {k: v for k, v in sorted(load.stats.items()) if k != "placed"},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.monotonic() - started, 1),
    }
    text = json.dumps(summary, indent=2, default=str)
    print("\n=== replica suite summary ===\n" + text, flush=True)  # noqa: T201
    fault_report.append(text)
    (tmp_path / "replica-summary.json").write_text(text + "\n")  # noqa: ASYNC240 - once, at the end

    details = (
        f"\n{text}\nlost: {lost_examples}\n"
        f"order: {order['_out_of_order']} {order['_status_twice']}\n{cluster.stack.logs(6)}"
    )
    # The saga invariants of the fault suite.
    assert load.stats["placed"] >= 60, "the load generator placed too few orders" + details
    assert not not_final, details
    assert not violations, details  # payments, refunds, stock, outboxes (tests/faults/invariants.py)
    assert not broker.charged_twice and not broker.refunded_twice, details
    assert lost == 0, details
    assert sum(broker.dead_letters.values()) == 0, details
    assert not missing, details
    assert load.stats["placed"] <= snap.orders <= load.stats["placed"] + load.stats["place_failed"], details
    # Replicas keep the mart available: every kill left a replica answering, no customer gave up.
    assert all(served_while_down.values()) and len(served_while_down) == len(SERVICES), details
    assert load.stats["place_failed"] == 0, details
    for name, targets in spread.items():
        assert len(targets) == REPLICAS and all(n > 0 for n in targets.values()), (name, details)
    # Migrations ran once, concurrently started replicas notwithstanding.
    for name, m in migrations.items():
        assert m["upgrades_run"] == m["revisions"] and m["alembic_version_rows"] == 1, (name, details)
    # Every outbox row on the broker once per relay commit window.
    assert pub["rows_missing_on_broker"] == 0 and pub["broker_records_without_outbox_row"] == 0, details
    for name, rows in pub["rows_published_more_than_once"].items():
        assert cluster.kills[name] > 0 and rows <= BATCH_SIZE * cluster.kills[name], (name, details)
    assert not pub["extra copies sent outside a kill -9 window (graceful restarts: expected 0)"], details
    # `mart dist status` sees every replica ready after the rolling restart.
    assert {k for k, v in status.items() if v["ready"] is True} == {
        i.label for i in cluster.cfg.instances()
    } | {"gateway"}, (status, details)
    # No two relays at once: per partition, at most one re-published batch per kill of that service.
    for (name, topic, partition), n in pub["_runs"].items():
        assert n <= cluster.kills[name], (name, topic, partition, n, details)
    # Per-key order, and nothing applied twice.
    assert order["keys applied out of order"] == 0, details
    assert order["inbox rows for events never in an outbox"] == 0, details
    assert order["orders with a status entered twice"] == 0, details
    assert order["sale movements applied twice"] == 0, details
    # The money: one intent per order, one charge and at most one refund per intent, none kept unpaid.
    assert money["intents created"] > 0 and money["charges"] > 0 and money["refunds"] > 0, details
    assert not [k for k, v in money.items() if isinstance(v, list) and v], details
