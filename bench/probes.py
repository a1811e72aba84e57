"""Measurements of the machine's own limits and of single hops: wrk, pgbench, one PostgreSQL commit,
one Kafka produce->consume round trip, and the sequential HTTP client (through the load generator)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from mart_common.bus.kafka import PRODUCER_SETTINGS, refresh_metadata
from mart_common.polling import PollTimeout, wait_until, wait_until_sync
from mart_common.settings import default_data_dir
from mart_testkit.ports import free_port

PG_HOST = "127.0.0.1"
PG_PORT = 5432
KAFKA = "127.0.0.1:9092"
ROOT = Path(__file__).resolve().parents[1]
# The local state (scripts/infra keep PostgreSQL and Kafka under it): the one rule of mart_common.settings.
DATA = default_data_dir()


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def lat_summary(lat_s: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in lat_s]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p95_ms": pct(ms, 95),
        "p99_ms": pct(ms, 99),
        "mean_ms": (sum(ms) / len(ms)) if ms else None,
        "max_ms": max(ms) if ms else None,
    }


# --- wrk ---------------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """``wrk`` from Debian; installed with apt-get when missing (root only). None if unavailable."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        r = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, env=env)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, env=env)
    return shutil.which("wrk")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def cpu_groups() -> dict[str, float]:
    """CPU seconds so far of PostgreSQL (all ``postgres`` processes) and of the Kafka broker (java)."""
    out = {"postgres": 0.0, "kafka": 0.0}
    for p in psutil.process_iter(["name", "cpu_times", "cmdline"]):
        try:
            name = p.info["name"] or ""
            ct = p.info["cpu_times"]
            if ct is None:
                continue
            if name == "postgres":
                out["postgres"] += ct.user + ct.system
            elif name == "java" and "kafka.Kafka" in " ".join(p.info["cmdline"] or []):
                out["kafka"] += ct.user + ct.system
        except (psutil.Error, TypeError):
            continue
    return out


def busy_s(m: Any) -> float:
    return sum(m) - m.idle - getattr(m, "iowait", 0)


def wrk(
    url: str,
    *,
    connections: int,
    duration_s: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    server_pids: list[int] | None = None,
) -> dict[str, Any]:
    """Run wrk; parse req/s, p50/p90/p99, errors; measure wrk's CPU (wait4 rusage) and the servers' CPU."""
    exe = ensure_wrk()
    if exe is None:
        raise RuntimeError("wrk is not installed and could not be installed (apt-get install wrk)")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    servers = [psutil.Process(p) for p in (server_pids or [])]
    s_cpu0 = [sum(p.cpu_times()[:2]) for p in servers]
    m0 = psutil.cpu_times()
    g0 = cpu_groups()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    s_cpu = [sum(p.cpu_times()[:2]) - c0 for p, c0 in zip(servers, s_cpu0, strict=True)]
    m1 = psutil.cpu_times()
    g1 = cpu_groups()
    res: dict[str, Any] = {"cmd": " ".join(cmd[:-1] + [url]), "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    res["requests"] = int(m.group(1)) if m else None
    for p in ("50", "90", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        res[f"p{p}_ms"] = _ms(m.group(1)) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    res["errors"] = errors
    res["gen_cpu_cores"] = (ru.ru_utime + ru.ru_stime) / wall
    res["server_cpu_cores"] = sum(s_cpu) / wall if servers else None
    res["tool"] = f"wrk ({exe})"
    res["machine_busy_cores"] = (busy_s(m1) - busy_s(m0)) / wall
    # backends that exit during the window take their CPU time with them: never below 0
    res["postgres_cpu_cores"] = max(0.0, (g1["postgres"] - g0["postgres"]) / wall)
    # what else ran on the machine meanwhile (processes unrelated to this measurement: noise)
    res["unrelated_cpu_cores"] = max(
        0.0,
        res["machine_busy_cores"]
        - res["gen_cpu_cores"]
        - (res["server_cpu_cores"] or 0)
        - res["postgres_cpu_cores"],
    )
    return res


# --- load generator subprocess -------------------------------------------------------------------


def loadgen(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run ``bench.loadgen`` in its own process and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="mart-bench-") as d:
        sp, op = Path(d, "spec.json"), Path(d, "out.json")
        sp.write_text(json.dumps(spec))
        r = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(sp), str(op)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"load generator failed ({r.returncode}): {r.stderr[-2000:]}")
        return json.loads(op.read_text())


# --- the bare endpoint -----------------------------------------------------------------------------


def wait_http(url: str, timeout: float = 60.0) -> bool:
    """Whether ``url`` answers without a server error within ``timeout`` seconds."""
    import httpx

    try:
        wait_until_sync(
            lambda: httpx.get(url, timeout=2).status_code < 500,
            timeout=timeout,
            interval=0.3,
            retry_on=(httpx.HTTPError,),
        )
    except PollTimeout:
        return False
    return True


# The framework of an older generation (FastAPI 0.111 era), for the same bare endpoint: what the versions
# we lock cost by themselves. Run by uv in a throwaway environment (PyPI), never installed in the project.
OLD_FRAMEWORK = ["fastapi==0.111.1", "starlette==0.37.2", "pydantic==2.7.4", "uvicorn[standard]==0.30.1"]


def start_hello(
    uvicorn_args: list[str], *, old_framework: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """The bare endpoint (bench/hello.py), on our locked versions or on :data:`OLD_FRAMEWORK`."""
    python = None
    if old_framework:
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        python = [uv, "run", "--no-project", "--quiet", *(f"--with={p}" for p in OLD_FRAMEWORK), "python"]
    return start_app("bench.hello:app", "/hello", uvicorn_args, python=python)


def start_lean(dsn: str, uvicorn_args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """The lean floor (bench/lean.py) on the database ``dsn`` (a plain ``postgresql://`` DSN)."""
    return start_app("bench.lean:app", "/products?limit=1", uvicorn_args, {"BENCH_LEAN_DSN": dsn})


def start_app(
    app: str,
    probe: str,
    uvicorn_args: list[str],
    env: dict[str, str] | None = None,
    python: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(python or [sys.executable]),
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *uvicorn_args,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not wait_http(f"http://127.0.0.1:{port}{probe}", 120 if python else 30):
        proc.kill()
        raise RuntimeError(f"{app} did not start")
    return proc, port


# --- PostgreSQL --------------------------------------------------------------------------------------


def _pg_env() -> dict[str, str]:
    return {**os.environ, "PGHOST": PG_HOST, "PGPORT": str(PG_PORT), "PGUSER": "bench", "PGDATABASE": "bench"}


def pgbench(*, scale: int, clients: int, duration_s: int, init: bool = True) -> dict[str, Any]:
    """TPC-B-like pgbench on the same server (db/role ``bench``): tps and average latency."""
    exe = shutil.which("pgbench")
    if exe is None:
        cands = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
        exe = str(cands[-1]) if cands else None
    if exe is None:
        raise RuntimeError("pgbench not found (Debian package postgresql-client)")
    env = _pg_env()
    res: dict[str, Any] = {"scale": scale, "clients": clients, "duration_s": duration_s}
    if init:
        t0 = time.perf_counter()
        r = subprocess.run([exe, "-i", "-q", "-s", str(scale)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pgbench -i failed: {r.stderr[-1000:]}")
        res["init_s"] = time.perf_counter() - t0
    r = subprocess.run(
        [exe, "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(duration_s), "-n"],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"pgbench failed: {r.stderr[-1000:]}")
    out = r.stdout
    m = re.search(r"tps = ([\d.]+)", out)
    res["tps"] = float(m.group(1)) if m else None
    m = re.search(r"latency average = ([\d.]+) ms", out)
    res["latency_avg_ms"] = float(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    res["failed"] = int(m.group(1)) if m else 0
    res["raw"] = out
    return res


# Operations this far apart find the processes asleep (a saga step at a few orders per second does): on
# this kind of machine every wake-up costs, so the same round trip takes 2-4x its back-to-back time.
SPARSE_GAP_S = 0.02
SPARSE_N = 100


async def _timed(op: Any, n: int, *, gap_s: float = 0.0, warmup: int = 0) -> dict[str, Any]:
    """``await op(i)`` ``n`` times (after ``warmup`` untimed calls), each ``gap_s`` after the previous one
    (0: back to back); the latency summary of the timed calls, and ``cpu_ms``: this process's CPU per call
    (the client's own work for one call: the driver's or the Kafka client's code, its wake-ups)."""
    for i in range(warmup):
        await op(i)
    lat = []
    cpu0 = time.process_time()
    for i in range(n):
        if gap_s:
            await asyncio.sleep(gap_s)
        t0 = time.perf_counter()
        await op(i)
        lat.append(time.perf_counter() - t0)
    return {**lat_summary(lat), "cpu_ms": (time.process_time() - cpu0) * 1000 / n}


async def _awake_and_asleep(op: Any, n: int, *, warmup: int = 20) -> dict[str, Any]:
    """``op`` timed back to back (the summary) and, under ``sparse``, ``SPARSE_GAP_S`` apart."""
    awake = await _timed(op, n, warmup=warmup)
    asleep = await _timed(op, SPARSE_N, gap_s=SPARSE_GAP_S)
    return {**awake, "sparse": {**asleep, "gap_ms": SPARSE_GAP_S * 1000}}


async def _pg_commit(n: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="bench", database="bench")
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, v text)")
        stmt = await conn.prepare("INSERT INTO bench_commit (v) VALUES ($1)")

        async def commit(_: int) -> None:
            async with conn.transaction():
                await stmt.fetch("x")

        summary = await _timed(commit, n, warmup=20)
        await conn.execute("TRUNCATE bench_commit")
        return summary
    finally:
        await conn.close()


def pg_commit(n: int = 500) -> dict[str, Any]:
    """One single-row INSERT + COMMIT (asyncpg, fsync on): the price of one durable transaction."""
    return asyncio.run(_pg_commit(n))


async def _pg_step(n: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="bench", database="bench")
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS bench_step_inbox (
                consumer text, event_id text, processed_at timestamptz, PRIMARY KEY (consumer, event_id));
            CREATE TABLE IF NOT EXISTS bench_step_aggregate (
                id int PRIMARY KEY, status text, history jsonb, updated_at timestamptz);
            CREATE TABLE IF NOT EXISTS bench_step_outbox (
                seq bigserial PRIMARY KEY, event_id text, topic text, key text, payload bytea, headers jsonb,
                created_at timestamptz, published_at timestamptz);
            TRUNCATE bench_step_inbox, bench_step_aggregate, bench_step_outbox;
            INSERT INTO bench_step_aggregate SELECT g, 'PENDING', '[]', now() FROM generate_series(0, 49) g;
            """
        )
        inbox = await conn.prepare(
            "INSERT INTO bench_step_inbox VALUES ('bench', $1, now()) ON CONFLICT DO NOTHING"
        )
        lock = await conn.prepare("SELECT status, history FROM bench_step_aggregate WHERE id = $1 FOR UPDATE")
        change = await conn.prepare(
            "UPDATE bench_step_aggregate SET status = $2, history = history || $3::jsonb, updated_at = now() "
            "WHERE id = $1"
        )
        outbox = await conn.prepare(
            "INSERT INTO bench_step_outbox (event_id, topic, key, payload, headers, created_at) "
            "VALUES ($1, 'bench.step', $2, $3, $4::jsonb, now())"
        )
        payload, headers = os.urandom(200), '{"ce_type": "bench.Step", "traceparent": "00-0-0-01"}'

        async def step(i: int) -> None:
            async with conn.transaction():
                await inbox.fetch(uuid.uuid4().hex)
                await lock.fetchrow(i % 50)
                await change.fetch(i % 50, "NEXT", '[{"status": "NEXT"}]')
                await outbox.fetch(uuid.uuid4().hex, str(i % 50), payload, headers)

        summary = await _awake_and_asleep(step, n)
        await conn.execute("DROP TABLE bench_step_inbox, bench_step_aggregate, bench_step_outbox")
        return summary
    finally:
        await conn.close()


def pg_step(n: int = 500) -> dict[str, Any]:
    """One saga step's database work done by the driver alone (asyncpg, prepared statements, fsync on):
    in one transaction the inbox row, the aggregate locked and changed, the next event's outbox row.
    Back to back, and (``sparse``) 20 ms apart."""
    return asyncio.run(_pg_step(n))


async def _pg_step_layers(n: int) -> dict[str, Any]:
    from bench import leansaga

    dsn = f"postgresql://bench@{PG_HOST}:{PG_PORT}/bench"
    role = "inventory"  # its aggregate: leansaga.STOCK_ROWS rows, locked and changed in turn
    payload, headers = os.urandom(200), '{"ce_type": "bench.Step", "traceparent": "00-0-0-01"}'
    out = {}
    for layer in leansaga.LAYERS:
        await _run_sql(dsn, leansaga.schema(role))
        db = leansaga.database_layer(layer, dsn, role)
        await db.start()
        try:

            async def step(i: int, db: leansaga.Layer = db) -> None:
                async with db.unit() as unit:
                    await unit.inbox(uuid.uuid4().hex)
                    await unit.change(str(i % leansaga.STOCK_ROWS), "RESERVED", {"status": "RESERVED"})
                    await unit.outbox(uuid.uuid4().hex, "bench.step", str(i), payload, headers)

            out[layer] = await _timed(step, n, warmup=20)
        finally:
            await db.close()
    await _run_sql(dsn, f"DROP TABLE lean_{role}_inbox, lean_{role}_agg, lean_{role}_outbox")
    return out


async def _run_sql(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_step_layers(n: int = 500) -> dict[str, Any]:
    """The same step's work (bench/leansaga.py's unit: inbox row, aggregate locked and changed, outbox row,
    one transaction) on each database layer the services could use: the driver alone (a pool), SQLAlchemy
    Core, the ORM session with statements only, the ORM session with the aggregate as an object (the
    services' way). Back to back; ``cpu_ms`` is the layer's CPU per step in this process."""
    return asyncio.run(_pg_step_layers(n))


SERVICE_DBS = (
    "user_service",
    "product_service",
    "inventory_service",
    "order_service",
    "payment_service",
    "notification_service",
)


async def _pg_counters(dbs: list[str]) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="bench", database="bench")
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit, xact_rollback FROM pg_stat_database "
            "WHERE datname = ANY($1::text[])",
            list(dbs),
        )
        xid = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        return {
            "xact_commit": {r["datname"]: r["xact_commit"] for r in rows},
            "xact_rollback": {r["datname"]: r["xact_rollback"] for r in rows},
            "xid": xid,
            "t": time.perf_counter(),
        }
    finally:
        await conn.close()


def pg_counters(dbs: list[str] | None = None) -> dict[str, Any]:
    """Committed transactions per database (pg_stat_database, reads included) and the cluster's next xid
    (each write transaction of ANY database takes one: informational on a shared cluster).
    Backends flush pg_stat_database at most about once a second: wait ~1 s before reading."""
    return asyncio.run(_pg_counters(list(dbs or SERVICE_DBS)))


def pg_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    per_db = {k: b["xact_commit"].get(k, 0) - a["xact_commit"].get(k, 0) for k in b["xact_commit"]}
    return {
        "xact_commit": sum(per_db.values()),
        "per_db": per_db,
        "cluster_write_xacts": b["xid"] - a["xid"],
        "rollbacks": sum(b["xact_rollback"].values()) - sum(a["xact_rollback"].values()),
        "seconds": b["t"] - a["t"],
    }


# --- Kafka ----------------------------------------------------------------------------------------------


# Seconds of untimed hops before the broker's hop is timed (its JIT; see _kafka_roundtrip).
KAFKA_WARMUP_S = 10.0


async def _kafka_roundtrip(n: int, burst: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = "bench.roundtrip"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
            except Exception:  # noqa: BLE001 - created concurrently
                pass
    finally:
        await admin.close()
    # the services' producer settings (mart_common.bus.kafka): idempotent, acks=all, no linger
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, **PRODUCER_SETTINGS)
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)

        async def known() -> bool:
            if consumer.partitions_for_topic(topic):
                return True
            await refresh_metadata(consumer)
            return False

        with contextlib.suppress(PollTimeout):  # as before: after ~5 s go on regardless
            await wait_until(known, timeout=5.0, interval=0.1)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)

        async def recv(count: int) -> None:
            got = 0
            while got < count:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                got += len(batch.get(tp, []))

        payload = os.urandom(200)  # about the size of one event

        async def hop(_: int) -> None:
            await producer.send_and_wait(topic, payload, key=uuid.uuid4().bytes)
            await recv(1)

        async def pipelined(count: int) -> float:
            """``count`` records produced and consumed, pipelined; returns messages/s."""
            t0 = time.perf_counter()
            rtask = asyncio.create_task(recv(count))
            futs = [await producer.send(topic, payload, key=b"k") for _ in range(count)]
            await asyncio.gather(*futs)
            await rtask
            return count / (time.perf_counter() - t0)

        # A broker started minutes ago runs its request path interpreted until the JIT has compiled it: a
        # cold broker's hop measured 1.25 ms where the same broker warm takes 0.4, the one the services
        # meet after the bench's first phases. Warm it first: a burst, then KAFKA_WARMUP_S of hops.
        await pipelined(burst)
        warm_until = time.perf_counter() + KAFKA_WARMUP_S
        i = 0
        while time.perf_counter() < warm_until:
            await hop(i)
            i += 1
        hops = await _awake_and_asleep(hop, n)
        # pipelined: a burst produced and consumed (messages/s through one partition)
        rate = await pipelined(burst)
        return {
            **hops,
            "burst_msgs": burst,
            "burst_msgs_per_s": rate,
            "producer": f"aiokafka {PRODUCER_SETTINGS} (as the services)",
        }
    finally:
        await producer.stop()
        await consumer.stop()


def kafka_roundtrip(n: int = 300, burst: int = 5000) -> dict[str, Any]:
    """Sequential produce (acks=all) -> consume of one ~200 B record on a 1-partition topic."""
    return asyncio.run(_kafka_roundtrip(n, burst))


class PgRenicer:
    """While running, gives the PostgreSQL backends that serve the bench's own databases (``bench`` and
    ``bench_*``) and the local Kafka broker the bench's nice level, every 0.5 s (pools open connections as
    they go). Other backends and the rest of the cluster keep their priority."""

    def __init__(self, nice: int) -> None:
        import threading

        self.nice = nice
        self._stop = threading.Event()
        self._thr = threading.Thread(target=self._run, daemon=True)
        self.reniced: set[int] = set()

    def start(self) -> None:
        self._thr.start()

    def stop(self) -> None:
        self._stop.set()
        self._thr.join(5)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        import asyncpg

        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="bench", database="bench")
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = 'bench' OR datname LIKE 'bench\\_%'"
                )
                pids = [r["pid"] for r in rows]
                # the local Kafka broker (scripts/infra/kafka.sh) serving the bench's topics
                kpid = DATA / "kafka" / "kafka.pid"
                if kpid.exists() and kpid.read_text().strip().isdigit():
                    pids.append(int(kpid.read_text().strip()))
                for pid in pids:
                    if pid in self.reniced:
                        continue
                    try:
                        psutil.Process(pid).nice(self.nice)
                        self.reniced.add(pid)
                    except psutil.Error:
                        pass
            except Exception:  # noqa: BLE001 - PostgreSQL restarting: try again
                conn = None
            await asyncio.sleep(0.5)
        if conn is not None:
            await conn.close()


# The saga's events in the order one checkout produces them (docs/saga.md): each gap between two of them is
# one hop (the next step's consumer, its transaction, its relay), except PaymentRequested → PaymentSucceeded,
# which also holds the load generator's reaction and its `POST /payments/{id}/simulate`.
SAGA_EVENTS = (
    "OrderPlaced",
    "StockReserved",
    "OrderAwaitingPayment",
    "PaymentRequested",
    "PaymentSucceeded",
    "OrderPaid",
)


def saga_hops(records: list[tuple[float, str, str]]) -> dict[str, float]:
    """p50 (ms) of each gap between the saga's consecutive events, from ``(timestamp_ms, order_id,
    event name)`` records, over the orders that have all six events; ``orders`` says how many."""
    by_order: dict[str, dict[str, float]] = {}
    for ts, order_id, name in records:
        by_order.setdefault(order_id, {}).setdefault(name, ts)
    complete = [times for times in by_order.values() if all(e in times for e in SAGA_EVENTS)]
    out: dict[str, float] = {"orders": float(len(complete))}
    if not complete:
        return out
    for a, b in itertools.pairwise(SAGA_EVENTS):
        out[f"{a} → {b}"] = pct([t[b] - t[a] for t in complete], 50) or 0.0
    return out


async def _saga_records(namespace: str, since_ms: int) -> list[tuple[float, str, str]]:
    from aiokafka import AIOKafkaConsumer
    from mart.orders.v1 import orders_pb2
    from mart.payments.v1 import payments_pb2
    from mart.stock.v1 import stock_pb2
    from mart_common.bus.kafka import partitions_of

    from mart_common import contracts

    topics = [
        namespace + contracts.topic_for(m)
        for m in (orders_pb2.OrderPlaced, stock_pb2.StockReserved, payments_pb2.PaymentRequested)
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topics)
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        wanted = set(SAGA_EVENTS)
        out: list[tuple[float, str, str]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                for rec in recs:
                    ce_type = dict(rec.headers or ()).get("ce_type", b"").decode()
                    name = ce_type.rsplit(".", 1)[-1]
                    if name in wanted:
                        order_id = getattr(contracts.decode(ce_type, rec.value), "order_id", "")
                        out.append((float(rec.timestamp), order_id, name))
        return out
    finally:
        await consumer.stop()


def saga_hops_since(namespace: str, since_s: float) -> dict[str, float]:
    """:func:`saga_hops` of the orders whose events a stack published on the broker since ``since_s``
    (wall clock), read back from its Kafka namespace."""
    return saga_hops(asyncio.run(_saga_records(namespace, int(since_s * 1000))))


def hops_text(hops: dict[str, float]) -> str:
    """:func:`saga_hops` in one line: each hop's p50 in ms, in the saga's order."""
    gaps = [f"{name} {ms:.1f}" for name, ms in hops.items() if name != "orders"]
    return f"{'; '.join(gaps)} ms ({hops.get('orders', 0):.0f} orders)"
