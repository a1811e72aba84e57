"""Bring the systems under test up and down: the local distributed mode (the same code as
``mart dist up``: ``mart_cli.dist``) on fresh databases and a fresh Kafka namespace, and the embedded mode
(``mart run``) on a throwaway data dir. Also: the setup every benchmark needs (accounts, products, stock)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from mart_common.polling import PollTimeout, wait_until_sync
from mart_testkit.kafka import delete_namespace_sync, new_namespace

from bench.probes import DATA, ROOT, free_port, wait_http

BENCH_DATA = DATA / "bench"
ADMIN_EMAIL = "bench-admin@example.com"


class Bases:
    """Base URLs of the six services (their own ports, or the embedded gateway's prefixes)."""

    def __init__(self, bases: dict[str, str]) -> None:
        self.b = bases

    def __getattr__(self, short: str) -> str:
        try:
            return self.__dict__["b"][short]
        except KeyError as exc:
            raise AttributeError(short) from exc


async def _recreate_dbs(names: list[tuple[str, str]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        for db, owner in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{db}" OWNER "{owner}"')
    finally:
        await conn.close()


class DistStack:
    """Six uvicorn processes (mart_cli.dist), PostgreSQL + Kafka via scripts/infra."""

    mode = "distributed"

    def __init__(self, admin_password: str, say: Any = print, *, gateway: bool = False) -> None:
        from mart_cli.dist import DistConfig
        from mart_cli.services import SERVICES

        self.say = say
        self.services = SERVICES
        # free ports, never the conventional ones: a developer's `mart dist up` (or another bench) may be
        # using those, and the bench's services are reached only through the URLs it prints
        ports = {s.package: free_port() for s in SERVICES}
        self.ports = ports
        self.dbs = {s.package: f"bench_{s.package}" for s in SERVICES}
        self.namespace = new_namespace("bench")
        data_dir = BENCH_DATA / "dist"
        if data_dir.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
        self.cfg = DistConfig(
            data_dir=data_dir,
            ports=ports,
            database_urls={p: f"postgresql+asyncpg://{p}@127.0.0.1:5432/{db}" for p, db in self.dbs.items()},
            kafka_namespace=self.namespace,
            infra_data_dir=DATA,
            extra_env={"MART_ADMIN_EMAIL": ADMIN_EMAIL, "MART_ADMIN_PASSWORD": admin_password},
            # the built-in gateway spreads requests over the replicas (the replica probe, docs/scaling.md)
            gateway_port=free_port() if gateway else None,
            replica_ports={p: [port] for p, port in ports.items()},
        )
        self.bases = Bases({s.short: f"http://127.0.0.1:{ports[s.package]}" for s in SERVICES})
        gw = f"http://127.0.0.1:{self.cfg.gateway_port}" if gateway else None
        self.gateway_bases = Bases({s.short: f"{gw}{s.prefix}" for s in SERVICES}) if gw else None

    def up(self) -> float:
        from mart_cli import dist

        t0 = time.monotonic()
        self.say("  infrastructure (scripts/infra): PostgreSQL + Kafka")
        dist.infra_up(self.cfg, say=lambda m: None)
        asyncio.run(_recreate_dbs([(db, p) for p, db in self.dbs.items()]))
        self.say(f"  fresh databases {', '.join(self.dbs.values())}; Kafka namespace '{self.namespace}'")
        dist.start_services(self.cfg, say=lambda m: None)
        dist.wait_ready(self.cfg, say=lambda m: None)
        dist.start_gateway(self.cfg, say=lambda m: None)
        return time.monotonic() - t0

    def scale(self, replicas: dict[str, int]) -> float:
        """Run ``replicas[package]`` processes of those services (new ones on free ports); the gateway is
        restarted to learn them. Returns seconds until all are ready."""
        from mart_cli import dist

        t0 = time.monotonic()
        for package, n in replicas.items():
            ports = self.cfg.replica_ports[package]
            while len(ports) < n:
                ports.append(free_port())
        dist.start_services(self.cfg, say=lambda m: None)
        dist.wait_ready(self.cfg, say=lambda m: None)
        dist.start_gateway(self.cfg, say=lambda m: None)  # restarts it when the replicas changed
        return time.monotonic() - t0

    def pids(self) -> dict[str, int]:
        """Every service process (``order-service``, ``order-service-2``, ...) and the gateway if it runs."""
        from mart_cli import dist

        out = {}
        for inst in self.cfg.instances():
            pid = dist.running_pid(self.cfg, inst)
            if pid is not None:
                out[inst.label] = pid
        if self.cfg.gateway_port and (gw := dist.gateway_pid(self.cfg)) is not None:
            out["gateway"] = gw
        return out

    def down(self) -> None:
        from mart_cli import dist

        dist.stop_services(self.cfg, say=lambda m: None)
        delete_namespace_sync(self.namespace)


class LeanSagaStack:
    """The lean saga (bench/leansaga.py): its three processes on the databases of our order, inventory and
    payment services (tables of their own), in a fresh Kafka namespace; the load generator drives it as it
    drives ours."""

    mode = "lean saga"

    def __init__(self, dist: DistStack, layer: str = "asyncpg") -> None:
        self.dist = dist
        self.layer = layer  # bench/leansaga.py's BENCH_SAGA_DB
        self.namespace = new_namespace("lean")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.bases = Bases({})
        self.dsns = {
            role: dist.cfg.database_urls[f"{role}_service"].replace("postgresql+asyncpg://", "postgresql://")
            for role in ("order", "inventory", "payment")
        }

    def up(self) -> float:
        from bench import leansaga
        from bench.probes import KAFKA, start_app

        t0 = time.monotonic()
        asyncio.run(self._prepare())
        ports = {}
        try:
            for role in leansaga.ROLES:
                env = {
                    "BENCH_SAGA_ROLE": role,
                    "BENCH_SAGA_DSN": self.dsns[role],
                    "BENCH_SAGA_KAFKA": KAFKA,
                    "BENCH_SAGA_NAMESPACE": self.namespace,
                    "BENCH_SAGA_DB": self.layer,
                }
                app = "bench.leansaga:app"
                self.procs[role], ports[role] = start_app(app, "/ready", ["--no-access-log"], env)
        except Exception:
            self.down()
            raise
        self.bases = Bases({role: f"http://127.0.0.1:{port}" for role, port in ports.items()})
        return time.monotonic() - t0

    async def _prepare(self) -> None:
        import asyncpg
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from mart.orders.v1 import orders_pb2
        from mart.payments.v1 import payments_pb2
        from mart.stock.v1 import stock_pb2
        from mart_common.settings import ServiceSettings

        from bench import leansaga
        from bench.probes import KAFKA
        from mart_common import contracts

        for role, dsn in self.dsns.items():
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(leansaga.schema(role))
            finally:
                await conn.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            topics = {
                contracts.topic_for(m)
                for m in (orders_pb2.OrderPlaced, stock_pb2.StockReserved, payments_pb2.PaymentRequested)
            }
            # as many partitions as our services' topics (a fetch carries every partition of a topic)
            partitions = ServiceSettings.model_fields["kafka_partitions"].default
            await admin.create_topics([NewTopic(self.namespace + t, partitions, 1) for t in sorted(topics)])
        finally:
            await admin.close()

    def pids(self) -> dict[str, int]:
        return {f"lean-{role}": proc.pid for role, proc in self.procs.items() if proc.poll() is None}

    def down(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        delete_namespace_sync(self.namespace)


class EmbeddedStack:
    """``mart run`` (all six services in one process, SQLite + in-process bus) on a throwaway data dir."""

    mode = "embedded"

    def __init__(self, admin_password: str, say: Any = print) -> None:
        from mart_common.settings import ServiceSettings

        from mart_cli.services import SERVICES

        self.say = say
        self.port = free_port()
        self.data_dir = BENCH_DATA / "embedded"
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.admin_password = admin_password
        base = f"http://127.0.0.1:{self.port}"
        self.bases = Bases({s.short: f"{base}/{s.name}" for s in SERVICES})
        self.proc: subprocess.Popen[bytes] | None = None
        # the bus log the embedded mart writes (ServiceSettings.resolved_bus_url under --data-dir)
        self.bus_url = f"sqlite+aiosqlite:///{self.data_dir / 'bus.sqlite'}"
        self.bus_partitions = ServiceSettings().inprocess_partitions

    def up(self) -> float:
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MART_ADMIN_EMAIL": ADMIN_EMAIL, "MART_ADMIN_PASSWORD": self.admin_password}
        for k in ("MART_DATABASE_URL", "MART_EVENT_BUS", "MART_KAFKA_NAMESPACE"):
            env.pop(k, None)
        self.log = open(self.data_dir.parent / "embedded.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mart_cli.main",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--no-seed",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_http(f"http://127.0.0.1:{self.port}/health", 120):
            raise RuntimeError(f"embedded mode did not start (log: {self.data_dir.parent / 'embedded.log'})")
        return time.monotonic() - t0

    def pids(self) -> dict[str, int]:
        return {"embedded (all six)": self.proc.pid} if self.proc else {}

    def down(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- setup: accounts, products, stock ---------------------------------------------------------------


def _retry(fn: Any, ok: Any, timeout: float = 60.0, what: str = "") -> httpx.Response:
    try:
        return wait_until_sync(fn, until=ok, timeout=timeout, interval=0.2, retry_on=(httpx.HTTPError,))
    except PollTimeout as exc:
        last = exc.last
    detail = f"{last.status_code} {last.text[:300]}" if isinstance(last, httpx.Response) else repr(last)
    raise RuntimeError(f"setup: {what} did not succeed within {timeout:.0f}s: {detail}")


def login(c: httpx.Client, bases: Bases, email: str, password: str) -> str:
    r = _retry(
        lambda: c.post(f"{bases.user}/auth/login", data={"username": email, "password": password}),
        lambda r: r.status_code == 200,
        60,
        f"login {email}",
    )
    return r.json()["access_token"]


def setup(
    bases: Bases, admin_password: str, *, n_products: int, n_checkout: int, say: Any = print
) -> dict[str, Any]:
    """Admin login, a fresh customer, ``n_products`` products (the first ``n_checkout`` get 1,000,000 units
    of stock); waits until the order service's catalog read model accepts orders for each of them."""
    t0 = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(timeout=30) as c:
        admin = login(c, bases, ADMIN_EMAIL, admin_password)
        ah = {"Authorization": f"Bearer {admin}"}
        email, pw = f"bench-{tag}@example.com", "bench-password-1"
        _retry(
            lambda: c.post(
                f"{bases.user}/auth/register",
                json={"email": email, "password": pw, "full_name": "Bench Customer"},
            ),
            lambda r: r.status_code in (201, 409),
            30,
            "register",
        )
        customer = login(c, bases, email, pw)
        ch = {"Authorization": f"Bearer {customer}"}
        ids = []
        for i in range(n_products):
            body = {
                "sku": f"BENCH-{tag}-{i:04d}",
                "name": f"Bench product {i}",
                "description": "A product created by the benchmark. " * 3,
                "price_cents": 100 + i,
                "currency": "EUR",
            }
            r = _retry(
                lambda body=body: c.post(f"{bases.product}/products", json=body, headers=ah),
                lambda r: r.status_code == 201,
                30,
                "create product",
            )
            ids.append(r.json()["id"])
        for pid in ids[:n_checkout]:
            _retry(
                lambda pid=pid: c.post(
                    f"{bases.inventory}/stock/{pid}/adjustments",
                    json={"delta": 1_000_000, "reason": "benchmark stock"},
                    headers=ah,
                ),
                lambda r: r.status_code == 201,
                60,
                "stock adjustment (inventory read model)",
            )
        order_body = {
            "shipping_address": {
                "line1": "1 Loop St",
                "city": "Localhost",
                "postal_code": "12345",
                "country": "DE",
            }
        }
        for pid in ids[:n_checkout]:
            _retry(
                lambda pid=pid: c.post(
                    f"{bases.order}/orders",
                    json={**order_body, "items": [{"product_id": pid, "quantity": 1}]},
                    headers=ch,
                ),
                lambda r: r.status_code == 201,
                60,
                "first order (order-service catalog read model)",
            )
        # the catalog list must show them all
        _retry(
            lambda: c.get(f"{bases.product}/products", params={"limit": 1}),
            lambda r: r.status_code == 200 and r.json().get("total", 0) >= n_products,
            30,
            "catalog list",
        )
    return {
        "admin_token": admin,
        "customer_token": customer,
        "product_ids": ids,
        "checkout_product_ids": ids[:n_checkout],
        "setup_s": time.monotonic() - t0,
    }
