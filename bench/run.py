"""One bounded benchmark run: ``./mart bench [--quick]`` (or ``python -m bench.run``).

Measures, on this machine and in this one run: the machine's limits (a bare uvicorn+FastAPI endpoint,
pgbench on the same PostgreSQL, a raw Kafka round trip), catalog reads, checkout throughput and latency in
the local distributed mode and in the embedded mode, service memory, profiles of the four services every
order goes through; prints a table with the ratios and writes ``bench/results/latest.json``, ``latest.png``
and the profiles.
See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench import probes
from bench.probes import lat_summary

RESULTS = Path(__file__).resolve().parent / "results"
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# --- budgets -----------------------------------------------------------------------------------------

FULL = {
    "wrk_s": 10,
    "wrk_conns": 32,
    "seq_n": 1000,
    "pgbench_s": 15,
    "pgbench_scale": 8,
    "pgbench_clients": 8,
    "commit_n": 500,
    "kafka_n": 300,
    "kafka_burst": 5000,
    "n_products": 200,
    "n_checkout": 20,
    "sat_conc": [8, 16, 32],
    # saturation is where the throughput stops growing: the customers are doubled past the list while a
    # step still gained more than PLATEAU_GAIN, up to this many
    "sat_max_conc": 128,
    "sat_s": 20,
    "profile_s": 12,
    "lat_s": 30,
    "poll_s": 0.01,
    "emb_conc": [8, 16],
    "emb_max_conc": 64,
    "emb_sat_s": 15,
    "emb_lat_s": 20,
    "idle_s": 5,
    "rep_conc": 16,
    "rep_s": 20,
}
QUICK = {
    **FULL,
    "wrk_s": 4,
    "seq_n": 300,
    "pgbench_s": 5,
    "commit_n": 200,
    "kafka_n": 100,
    "kafka_burst": 2000,
    "n_products": 60,
    "n_checkout": 10,
    "sat_conc": [8, 16],
    "sat_max_conc": 32,
    "sat_s": 8,
    "profile_s": 6,
    "lat_s": 10,
    "emb_conc": [8],
    "emb_max_conc": 16,
    "emb_sat_s": 8,
    "emb_lat_s": 8,
    "idle_s": 3,
    "rep_s": 8,
}


# --- process sampling ----------------------------------------------------------------------------------


class Sampler:
    """CPU seconds and RSS of the given processes (and of the whole machine) over a window; RSS is sampled
    every 0.5 s (peak kept)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {n: psutil.Process(p) for n, p in pids.items()}
        self.peak_rss: dict[str, int] = {n: 0 for n in pids}
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self.cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in self.procs.items()}
        self.sys0 = psutil.cpu_times()
        self.g0 = probes.cpu_groups()
        self.t0 = time.perf_counter()
        self._thr = threading.Thread(target=self._loop, daemon=True)
        self._thr.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            for n, p in self.procs.items():
                try:
                    self.peak_rss[n] = max(self.peak_rss[n], p.memory_info().rss)
                except psutil.Error:
                    pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thr.join()
        wall = time.perf_counter() - self.t0
        self.wall = wall
        self.cpu_cores = {}
        self.end_rss = {}
        for n, p in self.procs.items():
            try:
                self.cpu_cores[n] = (sum(p.cpu_times()[:2]) - self.cpu0[n]) / wall
                self.end_rss[n] = p.memory_info().rss
                self.peak_rss[n] = max(self.peak_rss[n], self.end_rss[n])
            except psutil.Error:
                pass
        g1 = probes.cpu_groups()
        self.infra_cores = {k: max(0.0, (g1[k] - self.g0[k]) / wall) for k in g1}
        self.machine_busy_cores = (probes.busy_s(psutil.cpu_times()) - probes.busy_s(self.sys0)) / wall

    def summary(self) -> dict[str, Any]:
        return {
            "service_cpu_cores": self.cpu_cores,
            "peak_rss_mb": {n: v / 2**20 for n, v in self.peak_rss.items()},
            "infra_cpu_cores": self.infra_cores,
            "machine_busy_cores": self.machine_busy_cores,
            "wall_s": self.wall,
        }


def rss_mb(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for n, p in pids.items():
        try:
            out[n] = psutil.Process(p).memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


# --- phases ----------------------------------------------------------------------------------------------


def machine_limits(b: dict[str, Any]) -> dict[str, Any]:
    from mart_cli import dist

    out: dict[str, Any] = {}
    say("machine limits: PostgreSQL + Kafka up (scripts/infra)")
    dist.infra_up(dist.DistConfig(data_dir=probes.DATA), say=lambda m: None)
    say("bare endpoint: uvicorn + FastAPI GET /hello, same uvicorn options as the services")
    proc, port = probes.start_hello(["--no-access-log"])
    try:
        url = f"http://127.0.0.1:{port}/hello"
        out["hello"] = probes.wrk(
            url, connections=b["wrk_conns"], duration_s=b["wrk_s"], server_pids=[proc.pid]
        )
        seq = probes.loadgen({"mode": "seq", "url": url, "n": b["seq_n"]})
        out["http_hop"] = {
            **lat_summary(seq["latencies_s"]),
            "errors": seq["errors"],
            "gen_cpu_cores": seq["gen_cpu_cores"],
            "what": "one sequential GET /hello from the load generator's aiohttp client",
        }
    finally:
        proc.terminate()
        proc.wait(10)
    say(f"  hello {out['hello']['rps']:.0f} req/s, one round trip p50 {out['http_hop']['p50_ms']:.2f} ms")
    try:
        proc, port = probes.start_hello(["--no-access-log"], old_framework=True)
    except Exception as exc:  # noqa: BLE001 - informative only (needs PyPI once, then uv's cache)
        say(f"  hello on {', '.join(probes.OLD_FRAMEWORK)} not measured: {exc}")
    else:
        try:
            out["hello_old_framework"] = probes.wrk(
                f"http://127.0.0.1:{port}/hello",
                connections=b["wrk_conns"],
                duration_s=b["wrk_s"],
                server_pids=[proc.pid],
            )
            out["hello_old_framework"]["versions"] = probes.OLD_FRAMEWORK
        finally:
            proc.terminate()
            proc.wait(10)
        say(f"  hello on the FastAPI 0.111 generation: {out['hello_old_framework']['rps']:.0f} req/s")
    say("pgbench (TPC-B-like) on the same PostgreSQL")
    out["pgbench"] = probes.pgbench(
        scale=b["pgbench_scale"], clients=b["pgbench_clients"], duration_s=b["pgbench_s"]
    )
    out["pg_commit"] = probes.pg_commit(b["commit_n"])
    out["pg_step"] = probes.pg_step(b["commit_n"])
    say(
        f"  pgbench {out['pgbench']['tps']:.0f} tps; "
        f"one INSERT+COMMIT p50 {out['pg_commit']['p50_ms']:.2f} ms; "
        f"one saga step's transaction (driver alone) p50 {out['pg_step']['p50_ms']:.2f} ms"
    )
    out["kafka"] = probes.kafka_roundtrip(b["kafka_n"], b["kafka_burst"])
    say(
        f"  kafka produce->consume p50 {out['kafka']['p50_ms']:.2f} ms, "
        f"burst {out['kafka']['burst_msgs_per_s']:.0f} msg/s"
    )
    return out


def catalog(stack: Any, b: dict[str, Any], product_ids: list[str]) -> dict[str, Any]:
    pid = stack.pids().get("product-service")
    out: dict[str, Any] = {}
    # The lean floor: the same first page (with the total) from the same database by a minimal FastAPI
    # route with one asyncpg query and no middleware (bench/lean.py): what our stack adds to that work.
    from mart_cli.services import SERVICES

    product = next(s for s in SERVICES if s.short == "product")
    dsn = stack.cfg.database_url(product).replace("postgresql+asyncpg://", "postgresql://")
    lean, lean_port = probes.start_lean(dsn, ["--no-access-log"])
    try:
        out["lean"] = probes.wrk(
            f"http://127.0.0.1:{lean_port}/products?limit=20",
            connections=b["wrk_conns"],
            duration_s=b["wrk_s"],
            server_pids=[lean.pid],
        )
        out["lean"]["path"] = "GET /products?limit=20 (lean floor)"
        if out["lean"].get("requests") and out["lean"].get("server_cpu_cores") is not None:
            out["lean"]["server_cpu_ms_per_request"] = (
                out["lean"]["server_cpu_cores"] * b["wrk_s"] * 1000 / out["lean"]["requests"]
            )
    finally:
        lean.terminate()
        lean.wait(10)
    say(f"  lean floor (one asyncpg query, no middleware): {out['lean']['rps']:.0f} req/s")
    # list/item: as clients see them (answers kept in the process until the catalog changes);
    # list_db: every request from the database (the request says Cache-Control: no-cache).
    for name, path, headers in (
        ("list", "/products?limit=20", None),
        ("list_db", "/products?limit=20", {"Cache-Control": "no-cache"}),
        ("item", f"/products/{product_ids[len(product_ids) // 2]}", None),
        ("health", "/health", None),
    ):
        url = stack.bases.product + path
        r = probes.wrk(
            url,
            connections=b["wrk_conns"],
            duration_s=b["wrk_s"],
            headers=headers,
            server_pids=[pid] if pid else None,
        )
        r["path"] = "GET " + path.split("?")[0] + ("?limit=20" if "limit" in path else "")
        if r.get("requests") and r.get("server_cpu_cores") is not None:
            r["server_cpu_ms_per_request"] = r["server_cpu_cores"] * b["wrk_s"] * 1000 / r["requests"]
        out[name] = r
        say(
            f"  catalog {name}: {r['rps']:.0f} req/s p99 {r['p99_ms']:.1f} ms errors {r['errors']} "
            f"(wrk cpu {r['gen_cpu_cores']:.2f} cores, product-service {r['server_cpu_cores'] or 0:.2f})"
        )
    # a separate, profiled run of the list endpoint (not the measured one): where its CPU goes
    cmd = py_spy_cmd()
    if cmd and pid:
        raw = RESULTS / "profile-catalog.collapsed.txt"
        dur = max(4, b["wrk_s"] // 2)
        spy = py_spy_record(cmd, pid, dur + 1, raw)
        time.sleep(0.5)
        r = probes.wrk(  # the database path (the cached one is the /health stack plus a dict lookup)
            stack.bases.product + "/products?limit=20",
            connections=b["wrk_conns"],
            duration_s=dur,
            headers={"Cache-Control": "no-cache"},
        )
        spy.communicate(timeout=120)
        if raw.exists():
            summ = summarize_profile(
                raw,
                "product-service",
                f"wrk GET /products?limit=20, Cache-Control: no-cache ({r['rps']:.0f} req/s while profiled)",
            )
            (RESULTS / "profile-catalog.txt").write_text(summ["text"])
            out["profile"] = {
                "files": [raw.name, "profile-catalog.txt"],
                "by_package": summ["by_package"],
                "top_self": summ["top_self"][:10],
                "samples": summ["samples"],
            }
            say(f"  profiled a separate catalog list run: {RESULTS.name}/profile-catalog.txt")
    return out


def checkout_run(
    stack: Any,
    setup: dict[str, Any],
    *,
    loop: str,
    conc: int = 16,
    rate: float = 0,
    duration: float,
    observe: str,
    poll_s: float,
    count_db: bool,
) -> dict[str, Any]:
    spec = {
        "mode": "checkout",
        "loop": loop,
        "concurrency": conc,
        "rate": rate,
        "duration_s": duration,
        "observe": observe,
        "poll_s": poll_s,
        "token": setup["customer_token"],
        "order_url": stack.bases.order,
        "payment_url": stack.bases.payment,
        "product_ids": setup["checkout_product_ids"],
        "kafka": probes.KAFKA,
        "namespace": getattr(stack, "namespace", ""),
        "bus_url": getattr(stack, "bus_url", None),
        "bus_partitions": getattr(stack, "bus_partitions", None),
        "warmup": 4,
        "order_timeout_s": 30,
    }
    dbs = list(getattr(stack, "dbs", {}).values()) or None
    c0 = probes.pg_counters(dbs) if count_db else None
    with Sampler(stack.pids()) as smp:
        res = probes.loadgen(spec, timeout=duration + 120)
    if count_db:
        time.sleep(1.2)  # backends flush pg_stat_database counters at most once a second
        c1 = probes.pg_counters(dbs)
        d = probes.pg_delta(c0, c1)
        orders = res["completed"] + res["warmup_completed"]
        d["orders"] = orders
        d["xact_commit_per_order"] = d["xact_commit"] / orders if orders else None
        res["db"] = d
    res["processes"] = smp.summary()
    res["processes"]["unrelated_cpu_cores"] = max(
        0.0,
        smp.machine_busy_cores
        - sum(smp.cpu_cores.values())
        - sum(smp.infra_cores.values())
        - res["gen_cpu_cores"],
    )
    res["latency"] = lat_summary(res["latencies_s"])
    res.update(
        {
            "loop": loop,
            "concurrency": conc if loop == "closed" else None,
            "rate": rate or None,
            "observe": observe,
            "poll_s": poll_s if observe != "kafka" else None,
        }
    )
    return res


#: a closed-loop step that doubled the customers and gained less than this is on the plateau
PLATEAU_GAIN = 0.05


def _concurrencies(concs: list[int], max_conc: int, runs: list[dict[str, Any]]) -> Iterator[int]:
    """The given customer counts, then doubled while the last doubling still gained more than
    ``PLATEAU_GAIN`` (a throughput still growing is not saturation yet), up to ``max_conc``."""
    yield from concs
    conc = concs[-1]
    while conc * 2 <= max_conc and len(runs) >= 2:
        last, before = runs[-1]["orders_per_s"], runs[-2]["orders_per_s"]
        if last <= before * (1 + PLATEAU_GAIN):
            return
        conc *= 2
        yield conc


def saturation(
    stack: Any,
    setup: dict[str, Any],
    concs: list[int],
    max_conc: int,
    duration: float,
    observe: str,
    poll_s: float,
    count_db: bool,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for conc in _concurrencies(concs, max_conc, runs):
        r = checkout_run(
            stack,
            setup,
            loop="closed",
            conc=conc,
            duration=duration,
            observe=observe,
            poll_s=poll_s,
            count_db=count_db,
        )
        errs = sum(r["errors"].values())
        say(
            f"  closed loop {conc:>3} customers: {r['orders_per_s']:.1f} orders PAID/s, p50 "
            f"{r['latency']['p50_ms'] or 0:.0f} ms, errors {errs}, "
            f"generator cpu {r['gen_cpu_cores']:.2f} cores"
            + (
                f", {r['db']['xact_commit_per_order']:.1f} db xacts/order"
                if count_db and r["db"]["orders"]
                else ""
            )
            + f"; machine busy {r['processes']['machine_busy_cores']:.2f} cores"
        )
        r.pop("latencies_s_full", None)
        runs.append(r)
    best = max(runs, key=lambda r: r["orders_per_s"])
    return {"runs": runs, "best": best}


def fixed_rate(
    stack: Any, setup: dict[str, Any], rate: float, duration: float, poll_s: float, observe: str
) -> dict[str, Any]:
    r = checkout_run(
        stack,
        setup,
        loop="open",
        rate=rate,
        duration=duration,
        observe=observe,
        poll_s=poll_s,
        count_db=False,
    )
    lat = r["latency"]
    say(
        f"  open loop {rate:.1f} orders/s: p50 {lat['p50_ms'] or 0:.0f} / p95 {lat['p95_ms'] or 0:.0f} / p99 "
        f"{lat['p99_ms'] or 0:.0f} ms, errors {sum(r['errors'].values())}, "
        f"generator cpu {r['gen_cpu_cores']:.2f}"
    )
    return r


def py_spy_cmd() -> list[str] | None:
    exe = shutil.which("py-spy")
    if exe:
        return [exe]
    uvx = shutil.which("uvx")
    if uvx:
        r = subprocess.run([uvx, "--from", "py-spy", "py-spy", "--version"], capture_output=True, timeout=180)
        if r.returncode == 0:
            return [uvx, "--from", "py-spy", "py-spy"]
    return None


def py_spy_record(cmd: list[str], pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` for ``seconds`` at 100 Hz, GIL-holding samples only (by wall clock), raw
    collapsed stacks to ``raw``; without pausing the process."""
    return subprocess.Popen(
        [*cmd, "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw", "--gil"]
        + ["-o", str(raw), "--nonblocking"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def perf_record(pids: dict[int, str], seconds: int, data: Path) -> subprocess.Popen[bytes] | None:
    """``perf record`` of ``pids`` (on-CPU samples only, 499 Hz, no call graphs) when perf is installed.

    py-spy's ``--gil`` samples the thread holding the GIL by wall clock, also while it is runnable but off
    the CPU; on a saturated machine a thread that wakes another process (every socket ``write`` to
    PostgreSQL or Kafka) is often preempted right there, so py-spy charges that wait to the write's caller
    (asyncpg, aiokafka). The kernel's samples count only time on a CPU: which binary the cycles ran in.
    """
    exe = shutil.which("perf")
    if exe is None:
        return None
    data.unlink(missing_ok=True)
    return subprocess.Popen(
        [exe, "record", "-q", "-e", "cpu-clock", "-F", "499", "-p", ",".join(map(str, pids)), "-o", str(data)]
        + ["--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _binary_group(dso: str) -> str:
    name = dso.rsplit("/", 1)[-1]
    if name.startswith("libpython"):
        return "Python interpreter (all Python code)"
    if dso == "[kernel.kallsyms]":
        return "kernel (sockets, epoll, scheduling)"
    if "/site-packages/" in dso:
        return dso.split("/site-packages/", 1)[1].split("/", 1)[0] + " (compiled)"
    if name.startswith("libc.") or name.startswith("libc-"):
        return "libc"
    return name.split(".cpython", 1)[0]


def perf_split(proc: subprocess.Popen[bytes] | None, data: Path, pids: dict[int, str]) -> dict[str, Any]:
    """Share of each service's on-CPU samples per binary (``perf report --sort pid,dso``); the data file is
    removed afterwards (it is large and holds addresses only)."""
    if proc is None:
        return {"text": ["(perf not installed: no on-CPU split by binary)", ""]}
    try:
        proc.wait(timeout=120)
        out = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--sort", "pid,dso", "-v", "-g", "none"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"text": [f"(perf failed: {exc})", ""]}
    finally:
        data.unlink(missing_ok=True)
    shares: dict[str, Counter[str]] = {svc: Counter() for svc in pids.values()}
    for line in out.splitlines():
        # "  73.10%  30435:python  /path/to/binary"
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        pid_text = parts[1].partition(":")[0]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid in pids:
            shares[pids[pid]][_binary_group(parts[-1])] += float(parts[0].rstrip("%"))
    by_service = {}
    text = ["on-CPU samples by binary (perf, kernel-counted CPU time; py-spy above samples by wall clock):"]
    for svc, c in shares.items():
        total = sum(c.values()) or 1.0
        top = [(grp, round(100 * v / total, 1)) for grp, v in c.most_common(6)]
        by_service[svc] = top
        text.append(f"  {svc:22s} " + ", ".join(f"{grp} {share}%" for grp, share in top))
    return {"by_service": by_service, "text": [*text, ""]}


# The services every order goes through: profiled side by side during one run.
SAGA = ("order-service", "inventory-service", "payment-service", "notification-service")


def profile(
    stack: Any, setup: dict[str, Any], svcs: tuple[str, ...], conc: int, duration: float
) -> dict[str, Any]:
    """py-spy (sampling, 100 Hz, attached to the running services, one sampler each) during one closed-loop
    checkout run: ``profile-checkout-<service>.collapsed.txt`` per service and ``profile-checkout.txt``,
    every service's summary after the four together (self time by package, weighted by their samples)."""
    cmd = py_spy_cmd()
    if cmd is None:
        return {"error": "py-spy not available (uvx --from py-spy py-spy)"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in RESULTS.glob("profile-checkout*.collapsed.txt"):
        old.unlink()
    pids = stack.pids()
    raws = {svc: RESULTS / f"profile-checkout-{svc}.collapsed.txt" for svc in svcs}
    spies = {svc: py_spy_record(cmd, pids[svc], int(duration), raws[svc]) for svc in svcs}
    perf_data = RESULTS / "profile-checkout.perf.data"
    oncpu = perf_record({pids[svc]: svc for svc in svcs}, int(duration) - 1, perf_data)
    time.sleep(1.0)
    run = checkout_run(
        stack,
        setup,
        loop="closed",
        conc=conc,
        duration=duration - 1.5,
        observe="kafka",
        poll_s=0.01,
        count_db=False,
    )
    during = f"a closed-loop checkout run ({run['orders_per_s']:.1f} orders/s while profiled)"
    summaries: dict[str, dict[str, Any]] = {}
    for svc, spy in spies.items():
        out_txt = spy.communicate(timeout=120)[0].decode(errors="replace")
        if spy.returncode != 0 or not raws[svc].exists():
            return {"error": f"py-spy failed on {svc}: {out_txt[-500:]}"}
        summaries[svc] = summarize_profile(raws[svc], svc, during)
    cpu_ms = {
        svc: 1000 * run["processes"]["service_cpu_cores"].get(svc, 0.0) / max(run["orders_per_s"], 1e-9)
        for svc in svcs
    }
    together = _packages_together(summaries, cpu_ms)
    split = perf_split(oncpu, perf_data, {pids[svc]: svc for svc in svcs})
    head = [
        f"py-spy --gil profiles of {', '.join(svcs)} during {during},",
        "sampled side by side (the samplers cost CPU too: the run is slower than the measured ones).",
        "CPU per order of each service while profiled: "
        + ", ".join(f"{svc} {ms:.1f} ms" for svc, ms in cpu_ms.items()),
        "",
        "the four together, self time by package (each service weighted by its CPU per order):",
        *(f"  {share:5.1f}%  {pkg}" for pkg, share in together),
        "",
        *split["text"],
    ]
    (RESULTS / "profile-checkout.txt").write_text(
        "\n".join(head) + "\n" + "\n".join(f"===== {svc}\n{summ['text']}" for svc, summ in summaries.items())
    )
    return {
        "services": list(svcs),
        "orders_per_s_while_profiled": run["orders_per_s"],
        "cpu_ms_per_order_while_profiled": cpu_ms,
        "files": [*(raws[svc].name for svc in svcs), "profile-checkout.txt"],
        "by_package_together": together,
        "on_cpu_by_binary": split.get("by_service"),
        "per_service": {
            svc: {
                "samples": summ["samples"],
                "by_package": summ["by_package"],
                "top_self": summ["top_self"][:10],
                "top_inclusive": summ["top_inclusive"][:15],
            }
            for svc, summ in summaries.items()
        },
    }


def _packages_together(
    summaries: dict[str, dict[str, Any]], weights: dict[str, float]
) -> list[tuple[str, float]]:
    """Self time by package over several services, each weighted by its CPU per order."""
    total = sum(weights.values()) or 1.0
    mixed: Counter[str] = Counter()
    for svc, summ in summaries.items():
        for pkg, share in summ["by_package"]:
            mixed[pkg] += share * weights.get(svc, 0.0) / total
    return [(pkg, round(share, 1)) for pkg, share in mixed.most_common(15)]


def _frame_name(frame: str) -> str:
    # py-spy raw: "function (path/to/file.py:123)" -> "function (pkg/file.py)"
    fn, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path = loc.rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "src" in parts:
        parts = parts[parts.index("src") + 1 :]
    elif path.startswith("/"):
        parts = parts[-2:]
    # else: already relative to its package root ("sqlalchemy/orm/session.py")
    return f"{fn} ({'/'.join(parts)})"


def summarize_profile(raw: Path, svc: str, during: str) -> dict[str, Any]:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        cnt = int(n)
        frames = [
            _frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += cnt
        self_c[frames[-1]] += cnt
        for f in set(frames):
            incl[f] += cnt
    # group the self time by library
    lib: Counter[str] = Counter()
    for f, c in self_c.items():
        mod = f.rsplit("(", 1)[-1].split("/")[0].rstrip(")")
        lib[mod] += c
    lines = [
        f"py-spy --gil profile of {svc} during {during}; {total} samples at 100 Hz, taken only while the "
        "process held the GIL (by wall clock: also while runnable but off the CPU; see the on-CPU split)",
        "",
        "self time by top-level package:",
    ]
    lines += [f"  {100 * c / total:5.1f}%  {m}" for m, c in lib.most_common(15)]
    lines += ["", "self time (leaf frames):"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_c.most_common(25)]
    lines += ["", "inclusive time (frame anywhere on the stack):"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(40)]
    return {
        "text": "\n".join(lines) + "\n",
        "samples": total,
        "top_self": [(f, round(100 * c / total, 1)) for f, c in self_c.most_common(25)],
        "top_inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(40)],
        "by_package": [(m, round(100 * c / total, 1)) for m, c in lib.most_common(15)],
    }


def idle_window(stack: Any, seconds: float) -> dict[str, Any]:
    dbs = list(stack.dbs.values())
    time.sleep(1.2)
    c0 = probes.pg_counters(dbs)
    with Sampler(stack.pids()) as smp:
        time.sleep(seconds)
    time.sleep(1.2)
    c1 = probes.pg_counters(dbs)
    d = probes.pg_delta(c0, c1)
    return {
        "rss_mb": rss_mb(stack.pids()),
        "cpu_cores": smp.cpu_cores,
        "machine_busy_cores": smp.machine_busy_cores,
        "xact_commit_per_s": d["xact_commit"] / d["seconds"],
        "per_db": d["per_db"],
    }


def distributed(b: dict[str, Any], admin_pw: str) -> dict[str, Any]:
    from bench.stack import DistStack, setup

    out: dict[str, Any] = {}
    stack = DistStack(admin_pw, say=say)
    say("distributed mode: mart_cli.dist (what `mart dist up` runs), fresh databases and Kafka namespace")
    try:
        out["up_s"] = stack.up()
        say(f"  six services ready in {out['up_s']:.1f}s: {stack.pids()}")
        st = setup(stack.bases, admin_pw, n_products=b["n_products"], n_checkout=b["n_checkout"], say=say)
        out["setup_s"] = st["setup_s"]
        say(
            f"  setup: customer, {len(st['product_ids'])} products, stock, read models "
            f"in {st['setup_s']:.1f}s"
        )
        out["idle"] = idle_window(stack, b["idle_s"])
        say("catalog reads (wrk, one product-service process)")
        out["catalog"] = catalog(stack, b, st["product_ids"])
        say("checkout saturation (closed loop; PAID observed from the broker: no polling load)")
        out["saturation"] = saturation(
            stack, st, b["sat_conc"], b["sat_max_conc"], b["sat_s"], "kafka", b["poll_s"], True
        )
        best = out["saturation"]["best"]
        cores = best["processes"]["service_cpu_cores"]
        say(
            "  CPU at the best point (cores): "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1]))
            + ", "
            + ", ".join(f"{k} {v:.2f}" for k, v in best["processes"]["infra_cpu_cores"].items())
        )
        say(f"profile: py-spy (--gil) and perf (on-CPU) on {', '.join(SAGA)} during a closed-loop run")
        try:
            out["profile"] = profile(stack, st, SAGA, best["concurrency"], b["profile_s"])
        except Exception as exc:  # noqa: BLE001 - the run goes on without a profile
            out["profile"] = {"error": repr(exc)}
        say(f"  {out['profile'].get('error') or 'saved ' + ', '.join(out['profile']['files'])}")
        rate = max(1.0, round(best["orders_per_s"] * 0.5, 1))
        say(
            f"checkout latency at a fixed arrival rate ({rate}/s = 50% of saturation; "
            "PAID observed from the broker)"
        )
        out["latency"] = fixed_rate(stack, st, rate, b["lat_s"], b["poll_s"], "kafka")
        out["pids"] = stack.pids()
    finally:
        say("distributed mode: stopping the six services (PostgreSQL and Kafka stay up)")
        stack.down()
    if out.get("latency"):
        out["lean_saga"] = lean_saga(stack, out["latency"]["rate"], b)
    return out


def lean_saga(dist: Any, rate: float, b: dict[str, Any]) -> dict[str, Any]:
    """The lean saga (bench/leansaga.py) at the latency run's rate, driven and observed the same way: the
    machine's floor for the checkout latency, with the processes, hops and commits of the saga's path."""
    from bench.stack import LeanSagaStack

    say(f"the lean saga (bench/leansaga.py: the path's work only) at the same {rate}/s, observed alike")
    lean = LeanSagaStack(dist)
    try:
        lean.up()
        fake = {"customer_token": "lean", "checkout_product_ids": ["lean"]}
        checkout_run(
            lean,
            fake,
            loop="open",
            rate=rate,
            duration=4,
            observe="kafka",
            poll_s=b["poll_s"],
            count_db=False,
        )  # warm-up: first connections, the groups' first fetches
        return fixed_rate(lean, fake, rate, b["lat_s"], b["poll_s"], "kafka")
    finally:
        lean.down()


# The services every checkout goes through (order, inventory, order, payment, order): the ones to scale.
BUSIEST = ("order_service", "payment_service", "inventory_service")


class _ViaGateway:
    """The stack as the load generator sees it when every request goes through the built-in gateway."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.bases = stack.gateway_bases
        self.dbs = stack.dbs
        self.namespace = stack.namespace

    def pids(self) -> dict[str, int]:
        return self.stack.pids()


def _per_service(cores: dict[str, float]) -> dict[str, float]:
    """CPU cores summed over the replicas of each service (``order-service-2`` counts as order-service)."""
    out: dict[str, float] = {}
    for label, v in cores.items():
        name = label if label == "gateway" else label.rsplit("-service", 1)[0] + "-service"
        out[name] = out.get(name, 0.0) + v
    return out


def replicas(b: dict[str, Any], admin_pw: str) -> dict[str, Any]:
    """Checkout saturation through the built-in gateway with 1, then 2 replicas of the busiest services, in
    one run on the same databases (docs/scaling.md). CPU per service and of the whole machine is reported:
    on 2 cores the second replica has no free core to run on, which the figures show."""
    from bench.stack import DistStack, setup

    out: dict[str, Any] = {"scaled": [p.replace("_", "-") for p in BUSIEST], "runs": {}}
    stack = DistStack(admin_pw, say=say, gateway=True)
    say("replicas: checkout through the built-in gateway, 1 then 2 replicas of " + ", ".join(out["scaled"]))
    try:
        out["up_s"] = stack.up()
        st = setup(stack.bases, admin_pw, n_products=b["n_products"], n_checkout=b["n_checkout"], say=say)
        via = _ViaGateway(stack)
        for n in (1, 2):
            if n > 1:
                took = stack.scale(dict.fromkeys(BUSIEST, n))
                say(f"  {n} replicas of the busiest services ready in {took:.1f}s")
            r = checkout_run(
                via,
                st,
                loop="closed",
                conc=b["rep_conc"],
                duration=b["rep_s"],
                observe="kafka",
                poll_s=b["poll_s"],
                count_db=False,
            )
            r.pop("latencies_s_full", None)
            procs = r["processes"]
            r["service_cpu_cores_by_service"] = _per_service(procs["service_cpu_cores"])
            out["runs"][str(n)] = r
            say(
                f"  {n} replica(s): {r['orders_per_s']:.1f} orders PAID/s at {b['rep_conc']} customers, p50 "
                f"{r['latency']['p50_ms'] or 0:.0f} ms, errors {sum(r['errors'].values())}; machine busy "
                f"{procs['machine_busy_cores']:.2f} of {psutil.cpu_count()} cores; services "
                + ", ".join(
                    f"{k} {v:.2f}"
                    for k, v in sorted(r["service_cpu_cores_by_service"].items(), key=lambda kv: -kv[1])
                )
            )
        one, two = out["runs"]["1"], out["runs"]["2"]
        out["speedup"] = two["orders_per_s"] / one["orders_per_s"] if one["orders_per_s"] else None
    finally:
        say("replicas: stopping the services and the gateway (PostgreSQL and Kafka stay up)")
        stack.down()
    return out


def embedded(b: dict[str, Any], admin_pw: str) -> dict[str, Any]:
    from bench.stack import EmbeddedStack, setup

    out: dict[str, Any] = {}
    stack = EmbeddedStack(admin_pw, say=say)
    say(f"embedded mode: `mart run --no-seed` on :{stack.port} (SQLite + in-process bus, one process)")
    try:
        out["up_s"] = stack.up()
        st = setup(stack.bases, admin_pw, n_products=b["n_checkout"], n_checkout=b["n_checkout"], say=say)
        out["setup_s"] = st["setup_s"]
        time.sleep(1)
        out["idle"] = {"rss_mb": rss_mb(stack.pids())}
        # PAID observed as in the distributed run: from the events (here the bus log the mart writes, read
        # by the load generator every poll_s), not by polling the services over HTTP
        say(
            "checkout saturation, embedded (closed loop; PAID observed from the bus log every "
            f"{b['poll_s'] * 1000:.0f} ms: no polling load)"
        )
        out["saturation"] = saturation(
            stack, st, b["emb_conc"], b["emb_max_conc"], b["emb_sat_s"], "bus", b["poll_s"], False
        )
        rate = max(1.0, round(out["saturation"]["best"]["orders_per_s"] * 0.5, 1))
        say(f"checkout latency, embedded, at {rate}/s (PAID observed from the bus log)")
        out["latency"] = fixed_rate(stack, st, rate, b["emb_lat_s"], b["poll_s"], "bus")
    finally:
        stack.down()
    return out


# --- ratios, table, files ------------------------------------------------------------------------------

# Sequential steps on the checkout path, POST /orders -> PAID observed (docs/saga.md), with HTTP polling:
#   HTTP:   POST /orders, GET /payments?order_id= (payment found), POST /payments/{id}/simulate,
#           GET /orders/{id} (PAID seen)                                                  -> 4 round trips
#   commits: order PENDING+OrderPlaced, inventory reserve+StockReserved, order AWAITING_PAYMENT+
#           OrderAwaitingPayment, payment created+PaymentRequested, payment SUCCEEDED+PaymentSucceeded
#           (webhook path), order PAID+OrderPaid                                           -> 6 commits
#   Kafka:  OrderPlaced->inventory, StockReserved->order, OrderAwaitingPayment->payment,
#           PaymentSucceeded->order                                                        -> 4 hops
HOPS_POLL = {"http": 4, "commits": 6, "kafka": 4}
# With the Kafka observer (what the distributed run uses): the payment is found from PaymentRequested and PAID
# from OrderPaid, each one more Kafka hop; HTTP is only POST /orders and POST simulate.
HOPS_KAFKA = {"http": 2, "commits": 6, "kafka": 6}


def ratios(res: dict[str, Any]) -> dict[str, Any]:
    lim, d = res.get("limits", {}), res.get("distributed", {})
    out: dict[str, Any] = {}
    hello = (lim.get("hello") or {}).get("rps")
    cat = d.get("catalog") or {}
    for k in ("list", "list_db", "item", "health"):
        if hello and cat.get(k, {}).get("rps"):
            out[f"catalog_{k}_over_bare"] = cat[k]["rps"] / hello
        if cat.get("lean", {}).get("rps") and k.startswith("list") and cat.get(k, {}).get("rps"):
            out[f"catalog_{k}_over_lean"] = cat[k]["rps"] / cat["lean"]["rps"]
    best = (d.get("saturation") or {}).get("best")
    pgb = (lim.get("pgbench") or {}).get("tps")
    if best and pgb and best.get("db", {}).get("orders"):
        db = best["db"]
        idle_rate = (d.get("idle") or {}).get("xact_commit_per_s", 0.0)
        # the services' background transactions (relay polls, jobs: idle rate x window) are not the orders'
        net = max(0.0, db["xact_commit"] - idle_rate * db["seconds"]) / db["orders"]
        out["db_xacts_per_order_gross"] = db["xact_commit_per_order"]
        out["db_xacts_per_order"] = net
        out["db_rollbacks_per_order"] = db["rollbacks"] / db["orders"]
        # all six services' CPU (user+sys) per order PAID at saturation
        out["service_cpu_ms_per_order"] = _service_ms_per_order(best)
        if net > 0:
            out["db_bound_orders_per_s"] = pgb / net
            out["checkout_over_db_bound"] = best["orders_per_s"] / (pgb / net)
    ebest = (res.get("embedded", {}).get("saturation") or {}).get("best")
    if ebest:
        out["embedded_cpu_ms_per_order"] = _service_ms_per_order(ebest)
    if d.get("latency"):
        # the same at half the saturation rate: each event mostly alone, nothing shared by a batch
        out["latency_service_cpu_ms_per_order"] = _service_ms_per_order(d["latency"])
    lat = (d.get("latency") or {}).get("latency", {})
    if lat.get("p50_ms") and lim.get("http_hop") and lim.get("pg_commit") and lim.get("kafka"):
        hops = HOPS_KAFKA if d["latency"].get("observe") == "kafka" else HOPS_POLL
        floor = (
            hops["http"] * lim["http_hop"]["p50_ms"]
            + hops["commits"] * lim["pg_commit"]["p50_ms"]
            + hops["kafka"] * lim["kafka"]["p50_ms"]
        )
        out["hops"] = hops
        out["minimal_checkout_ms"] = floor
        out["checkout_p50_over_minimal"] = lat["p50_ms"] / floor
        if lim.get("pg_step"):
            # the same hops, each step's commit replaced by a step's whole transaction done by the driver
            # alone: what our stack adds above the database work every step must do
            steps = floor + hops["commits"] * (lim["pg_step"]["p50_ms"] - lim["pg_commit"]["p50_ms"])
            out["lean_steps_checkout_ms"] = steps
            out["checkout_p50_over_lean_steps"] = lat["p50_ms"] / steps
            sparse_step = lim["pg_step"].get("sparse", {}).get("p50_ms")
            sparse_hop = lim["kafka"].get("sparse", {}).get("p50_ms")
            if sparse_step and sparse_hop:
                # the same, each step and hop timed 20 ms after the previous one (processes asleep)
                apart = (
                    hops["http"] * lim["http_hop"]["p50_ms"]
                    + hops["commits"] * sparse_step
                    + hops["kafka"] * sparse_hop
                )
                out["lean_steps_apart_checkout_ms"] = apart
                out["checkout_p50_over_lean_steps_apart"] = lat["p50_ms"] / apart
                # the machine's own floor of ratio 3: a saga of lean steps whose processes wake for each
                out["lean_steps_apart_over_minimal"] = apart / floor
        lean = (d.get("lean_saga") or {}).get("latency", {})
        if lean.get("p50_ms") and lean.get("p99_ms"):
            # the lean saga at the same rate: the machine's floor of the latency ratios, end to end, and how
            # far above it our stack is (ratio 6 in docs/performance.md "The ratios")
            out["lean_saga_p50_over_minimal"] = lean["p50_ms"] / floor
            out["lean_saga_p99_over_minimal"] = lean["p99_ms"] / floor
            out["checkout_p50_over_lean_saga"] = lat["p50_ms"] / lean["p50_ms"]
            out["checkout_p99_over_lean_saga"] = lat["p99_ms"] / lean["p99_ms"]
            out["lean_saga_cpu_ms_per_order"] = _service_ms_per_order(d["lean_saga"])
    return out


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


class _Table:
    """The rows of the summary table: figure, value, gen CPU, other CPU, errors, ratio."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def row(
        self, name: str, value: str, gen: Any = None, errors: Any = None, ratio: str = "", other: Any = None
    ) -> None:
        self.rows.append(
            (
                name,
                value,
                _f(gen, "{:.2f}"),
                _f(other, "{:.2f}"),
                "-" if errors is None else str(errors),
                ratio,
            )
        )


def table(res: dict[str, Any]) -> str:
    lim, d, e, r = (
        res.get("limits", {}),
        res.get("distributed", {}),
        res.get("embedded", {}),
        res.get("ratios", {}),
    )
    t = _Table()
    if lim:
        _limit_rows(t, lim)
    _catalog_rows(t, d.get("catalog", {}), r)
    for mode, m in (("dist", d), ("embedded", e)):
        _checkout_rows(t, mode, m, lim, r)
    _cost_rows(t, r)
    _replica_rows(t, res)
    _rss_rows(t, d, e)
    return _render(t.rows, res)


def _limit_rows(t: _Table, lim: dict[str, Any]) -> None:
    """The machine's own limits: bare ASGI, one HTTP hop, pgbench, one commit, Kafka."""
    h = lim.get("hello", {})
    t.row(
        "bare ASGI GET /hello (uvicorn+FastAPI)",
        f"{_f(h.get('rps'), '{:.0f}')} req/s, p99 {_f(h.get('p99_ms'))} ms",
        h.get("gen_cpu_cores"),
        h.get("errors"),
        other=h.get("unrelated_cpu_cores"),
    )
    ho = lim.get("hello_old_framework")
    if ho:
        ours = h.get("rps") / ho["rps"] if h.get("rps") and ho.get("rps") else None
        t.row(
            "  same, FastAPI 0.111 / Starlette 0.37 / pydantic 2.7",
            f"{_f(ho.get('rps'), '{:.0f}')} req/s, p99 {_f(ho.get('p99_ms'))} ms",
            ho.get("gen_cpu_cores"),
            ho.get("errors"),
            f"ours ÷ this = {_f(ours, '{:.2f}')}",
            other=ho.get("unrelated_cpu_cores"),
        )
    hh = lim.get("http_hop", {})
    t.row(
        "  one HTTP round trip (sequential)",
        f"p50 {_f(hh.get('p50_ms'), '{:.2f}')} ms",
        hh.get("gen_cpu_cores"),
        sum(hh.get("errors", {}).values()),
    )
    p = lim.get("pgbench", {})
    t.row(
        f"pgbench TPC-B ({p.get('clients')} clients, scale {p.get('scale')})",
        f"{_f(p.get('tps'), '{:.0f}')} tps, avg {_f(p.get('latency_avg_ms'), '{:.2f}')} ms",
        None,
        p.get("failed"),
    )
    c = lim.get("pg_commit", {})
    t.row(
        "  one INSERT+COMMIT (asyncpg)",
        f"p50 {_f(c.get('p50_ms'), '{:.2f}')} ms, p99 {_f(c.get('p99_ms'), '{:.2f}')} ms",
    )
    st = lim.get("pg_step", {})
    if st:
        t.row(
            "  one saga step's transaction (asyncpg)",
            f"p50 {_f(st.get('p50_ms'), '{:.2f}')} ms, p99 {_f(st.get('p99_ms'), '{:.2f}')} ms; "
            f"20 ms apart p50 {_f(st.get('sparse', {}).get('p50_ms'), '{:.2f}')} ms; "
            f"client CPU {_cpu_pair(st)} ms per step",
        )
    k = lim.get("kafka", {})
    t.row(
        "Kafka produce->consume round trip",
        f"p50 {_f(k.get('p50_ms'), '{:.2f}')} ms, p99 {_f(k.get('p99_ms'), '{:.2f}')} ms; "
        f"20 ms apart p50 {_f(k.get('sparse', {}).get('p50_ms'), '{:.2f}')} ms; "
        f"burst {_f(k.get('burst_msgs_per_s'), '{:.0f}')} msg/s; client CPU {_cpu_pair(k)} ms per hop",
    )


def _cpu_pair(probe: dict[str, Any]) -> str:
    """A probe's client CPU per call: back to back / 20 ms apart."""
    return f"{_f(probe.get('cpu_ms'), '{:.2f}')} / {_f(probe.get('sparse', {}).get('cpu_ms'), '{:.2f}')}"


def _catalog_rows(t: _Table, cat: dict[str, Any], r: dict[str, Any]) -> None:
    """Catalog reads (lean floor, list, item, health) with their ratios to the bare endpoint."""
    for key, label in (
        ("lean", "lean floor GET /products?limit=20"),
        ("list", "catalog GET /products?limit=20"),
        ("list_db", "  same, Cache-Control: no-cache (database)"),
        ("item", "catalog GET /products/{id}"),
        ("health", "GET /health (full middleware)"),
    ):
        if key in cat:
            c = cat[key]
            ratio = "" if key == "lean" else f"÷ bare = {_f(r.get(f'catalog_{key}_over_bare'), '{:.3f}')}"
            if f"catalog_{key}_over_lean" in r:
                ratio += f", ÷ lean = {r[f'catalog_{key}_over_lean']:.2f}"
            cpu = c.get("server_cpu_ms_per_request")
            t.row(
                label,
                f"{_f(c.get('rps'), '{:.0f}')} req/s, p99 {_f(c.get('p99_ms'))} ms"
                + (f", {cpu:.2f} ms CPU/req" if cpu else ""),
                c.get("gen_cpu_cores"),
                c.get("errors"),
                ratio,
                other=c.get("unrelated_cpu_cores"),
            )


def _checkout_rows(t: _Table, mode: str, m: dict[str, Any], lim: dict[str, Any], r: dict[str, Any]) -> None:
    """One mode's checkout: the saturation runs (closed loop), then the latency at a fixed rate."""
    sat = m.get("saturation")
    if sat:
        for run in sat["runs"]:
            best = " (best)" if run is sat["best"] else ""
            ratio = ""
            if mode == "dist" and best and "checkout_over_db_bound" in r:
                ratio = (
                    f"÷ (pgbench {_f(lim.get('pgbench', {}).get('tps'), '{:.0f}')} ÷ "
                    f"{r['db_xacts_per_order']:.1f} db xacts/order) = {r['checkout_over_db_bound']:.3f}"
                )
            t.row(
                f"checkout {mode}: {run['concurrency']} customers{best}",
                f"{run['orders_per_s']:.1f} PAID/s, p50 {_f(run['latency']['p50_ms'], '{:.0f}')} ms",
                run["gen_cpu_cores"],
                sum(run["errors"].values()),
                ratio,
                other=run["processes"].get("unrelated_cpu_cores"),
            )
    lat = m.get("latency")
    if lat:
        ratio = ""
        if mode == "dist" and "checkout_p50_over_minimal" in r:
            ratio = (
                f"p50 ÷ minimal hops {r['minimal_checkout_ms']:.1f} ms = {r['checkout_p50_over_minimal']:.2f}"
            )
            if "checkout_p50_over_lean_steps" in r:
                ratio += (
                    f"; ÷ lean steps {r['lean_steps_checkout_ms']:.1f} ms = "
                    f"{r['checkout_p50_over_lean_steps']:.2f}"
                )
            if "checkout_p50_over_lean_steps_apart" in r:
                ratio += (
                    f"; ÷ the same 20 ms apart {r['lean_steps_apart_checkout_ms']:.1f} ms = "
                    f"{r['checkout_p50_over_lean_steps_apart']:.2f} (which is itself "
                    f"{r['lean_steps_apart_over_minimal']:.2f} × the minimal hops)"
                )
        _latency_row(t, f"checkout {mode}: latency at {lat['rate']}/s (open loop)", lat, "service CPU", ratio)
    lean = m.get("lean_saga")
    if lean:
        ratio = ""
        if "lean_saga_p50_over_minimal" in r:
            ratio = (
                f"p50 ÷ minimal hops = {r['lean_saga_p50_over_minimal']:.2f}, p99 ÷ minimal hops = "
                f"{r['lean_saga_p99_over_minimal']:.2f}; ours ÷ this: "
                f"p50 {r['checkout_p50_over_lean_saga']:.2f}, p99 {r['checkout_p99_over_lean_saga']:.2f}"
            )
        _latency_row(t, f"  the lean saga at {lean['rate']}/s (floor)", lean, "CPU", ratio)


def _latency_row(t: _Table, label: str, run: dict[str, Any], cpu: str, ratio: str) -> None:
    """One open-loop latency run: its percentiles and the CPU per order of the processes it measured."""
    L = run["latency"]
    t.row(
        label,
        f"p50 {_f(L['p50_ms'], '{:.0f}')} / p95 {_f(L['p95_ms'], '{:.0f}')} / "
        f"p99 {_f(L['p99_ms'], '{:.0f}')} ms "
        f"(n={L['n']}); {_f(_service_ms_per_order(run))} ms {cpu} per order",
        run["gen_cpu_cores"],
        sum(run["errors"].values()),
        ratio,
        other=run["processes"].get("unrelated_cpu_cores"),
    )


def _service_ms_per_order(run: dict[str, Any]) -> float | None:
    """The services' CPU per order PAID during one checkout run (ms)."""
    ops, cores = run.get("orders_per_s"), run.get("processes", {}).get("service_cpu_cores")
    return sum(cores.values()) * 1000 / ops if ops and cores else None


def _cost_rows(t: _Table, r: dict[str, Any]) -> None:
    """CPU, database transactions and rollbacks per order PAID."""
    if "service_cpu_ms_per_order" in r or "db_rollbacks_per_order" in r:
        t.row(
            "checkout dist: cost per order PAID (at best)",
            f"{_f(r.get('service_cpu_ms_per_order'), '{:.1f}')} ms service CPU; "
            f"{_f(r.get('db_xacts_per_order'))} db xacts "
            f"(gross {_f(r.get('db_xacts_per_order_gross'))}), "
            f"{_f(r.get('db_rollbacks_per_order'), '{:.2f}')} rollbacks",
        )
    if r.get("embedded_cpu_ms_per_order"):
        t.row(
            "checkout embedded: cost per order PAID (at best)", f"{r['embedded_cpu_ms_per_order']:.1f} ms CPU"
        )


def _replica_rows(t: _Table, res: dict[str, Any]) -> None:
    """Checkout through the gateway with 1 and 2 replicas of the busiest services."""
    rep = res.get("replicas", {}).get("runs", {})
    for n, run in sorted(rep.items()):
        cpu = run.get("service_cpu_cores_by_service", {})
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])[:3])
        t.row(
            f"checkout via gateway, {n} replica(s) of order/payment/inventory",
            f"{_f(run.get('orders_per_s'))} orders/s, machine busy "
            f"{_f(run.get('processes', {}).get('machine_busy_cores'), '{:.2f}')} cores ({top})",
            run.get("gen_cpu_cores"),
            sum(run.get("errors", {}).values()),
            f"x{res['replicas']['speedup']:.2f}" if n == "2" and res["replicas"].get("speedup") else "",
            other=run.get("processes", {}).get("unrelated_cpu_cores"),
        )


def _rss_rows(t: _Table, d: dict[str, Any], e: dict[str, Any]) -> None:
    """Memory of each process, idle and under load."""
    if d.get("idle") or e.get("idle"):
        peak = (d.get("saturation", {}).get("best", {}) or {}).get("processes", {}).get("peak_rss_mb", {})
        for n, v in (d.get("idle", {}).get("rss_mb") or {}).items():
            t.row(f"RSS {n}", f"idle {v:.0f} MB, under load {_f(peak.get(n), '{:.0f}')} MB")
        epeak = (e.get("saturation", {}).get("best", {}) or {}).get("processes", {}).get("peak_rss_mb", {})
        for n, v in (e.get("idle", {}).get("rss_mb") or {}).items():
            t.row(f"RSS {n}", f"idle {v:.0f} MB, under load {_f(epeak.get(n), '{:.0f}')} MB")


def _render(rows: list[tuple[str, ...]], res: dict[str, Any]) -> str:
    """The rows as aligned columns, with the error total, the legend and the machine's load."""
    head = ("figure", "value", "gen CPU", "other CPU", "errors", "ratio")
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(6)]
    line = "  ".join("-" * x for x in w)
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head)), line]
    out += ["  ".join(c.ljust(w[i]) for i, c in enumerate(rw)) for rw in rows]
    total_err = sum(int(x[4]) for x in rows if x[4].isdigit())
    meta = res.get("meta", {}).get("machine", {})
    la0, la1 = meta.get("loadavg_at_start"), res.get("meta", {}).get("loadavg_at_end")
    out += [
        line,
        f"errors during the run: {total_err}",
        "gen CPU = the load generator's own CPU (user+sys ÷ wall, in cores; "
        f"1.00 = one of {psutil.cpu_count()} "
        "cores); other CPU = cores used meanwhile by processes unrelated to the measurement",
        f"load average at start {_f(la0[0] if la0 else None, '{:.2f}')}, "
        f"at end {_f(la1[0] if la1 else None, '{:.2f}')}; bench processes at nice "
        f"{res.get('meta', {}).get('nice', 0)}",
    ]
    return "\n".join(out)


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim, d, e = res.get("limits", {}), res.get("distributed", {}), res.get("embedded", {})
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    bars = []
    if lim.get("hello"):
        bars.append(("bare /hello\nreq/s", lim["hello"]["rps"]))
    for k, lab in (("list", "catalog list\nreq/s"), ("item", "catalog item\nreq/s")):
        if d.get("catalog", {}).get(k):
            bars.append((lab, d["catalog"][k]["rps"]))
    if lim.get("pgbench"):
        bars.append(("pgbench\ntps", lim["pgbench"]["tps"]))
    if res.get("ratios", {}).get("db_bound_orders_per_s"):
        bars.append(("DB-bound\norders/s", res["ratios"]["db_bound_orders_per_s"]))
    if d.get("saturation"):
        bars.append(("checkout\ndistributed\nPAID/s", d["saturation"]["best"]["orders_per_s"]))
    if e.get("saturation"):
        bars.append(("checkout\nembedded\nPAID/s", e["saturation"]["best"]["orders_per_s"]))
    if bars:
        ax1.bar([b[0] for b in bars], [b[1] for b in bars], color="#4c72b0")
        ax1.set_yscale("log")
        for i, (_, v) in enumerate(bars):
            ax1.text(i, v, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        ax1.set_title("throughput (log scale)")
        ax1.tick_params(axis="x", labelsize=7, rotation=30)
    runs = (
        ("distributed", d.get("latency")),
        ("lean saga (floor)", d.get("lean_saga")),
        ("embedded", e.get("latency")),
    )
    for label, run in runs:
        lat = (run or {}).get("latencies_s")
        if lat:
            xs = sorted(x * 1000 for x in lat)
            ax2.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=f"{label} @ {run['rate']}/s")
    if res.get("ratios", {}).get("minimal_checkout_ms"):
        ax2.axvline(res["ratios"]["minimal_checkout_ms"], color="grey", ls="--", label="minimal hop sum")
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(ScalarFormatter())
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("POST /orders -> PAID (ms)")
    ax2.set_ylabel("fraction of orders")
    ax2.set_title("checkout latency CDF (open loop)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _strip(obj: Any) -> Any:
    """Drop bulky per-request lists from the JSON (latency lists are summarised; the CDF is in the PNG)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in ("latencies_s", "raw")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def main(argv: list[str] | None = None, prog: str = "bench.run") -> int:
    global RESULTS
    args = _parse_args(argv, prog)
    renicer = None
    if args.nice:
        # inherited by everything the bench starts (services, hello server, wrk, load generator);
        # PostgreSQL and Kafka keep their own priority
        os.nice(args.nice)
        renicer = probes.PgRenicer(os.nice(0))
        renicer.start()
    RESULTS = args.out
    RESULTS.mkdir(parents=True, exist_ok=True)
    b = QUICK if args.quick else FULL
    admin_pw = os.environ.get("MART_BENCH_ADMIN_PASSWORD") or secrets.token_urlsafe(16)
    res: dict[str, Any] = {"meta": _meta(args, b), "failures": {}}
    probes.ensure_wrk()
    _run_parts(res, b, admin_pw, args.skip)
    if renicer is not None:
        renicer.stop()
        res["meta"]["pg_backends_reniced"] = len(renicer.reniced)
    res["ratios"] = ratios(res)
    res["meta"]["wall_s"] = time.monotonic() - T0
    res["meta"]["loadavg_at_end"] = os.getloadavg()
    _write_results(res)
    if res["failures"]:
        print(
            f"FAILED parts: {', '.join(res['failures'])} (details in latest.json 'failures')", file=sys.stderr
        )
        return 1
    return 0


def _parse_args(argv: list[str] | None, prog: str = "bench.run") -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a ~2 minute smoke run (shorter phases)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["limits", "dist", "embedded", "replicas"],
        help="leave a part out (repeatable)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="add this to the bench's process priority (e.g. -10, root only): on a shared machine, the "
        "processes it starts, and the PostgreSQL backends serving its databases, get the CPU first",
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    return ap.parse_args(argv)


def _meta(args: argparse.Namespace, b: dict[str, Any]) -> dict[str, Any]:
    """What the run was asked to do, and the machine it ran on."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nice": args.nice,
        "quick": args.quick,
        "budget": b,
        "machine": {
            "cpus": psutil.cpu_count(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
    }


def _run_parts(res: dict[str, Any], b: dict[str, Any], admin_pw: str, skip: list[str]) -> None:
    """Each part not skipped, in order; a failed part is recorded in ``res["failures"]``, the others run."""
    parts = (
        ("limits", machine_limits),
        ("distributed", distributed),
        ("embedded", embedded),
        ("replicas", replicas),
    )
    for name, fn in parts:
        if name in skip or (name == "distributed" and "dist" in skip):
            continue
        try:
            res[name] = fn(b) if name == "limits" else fn(b, admin_pw)
        except Exception as exc:  # noqa: BLE001 - a failed part is reported, the others still run
            say(f"{name} FAILED: {exc!r}")
            res["failures"][name] = "".join(traceback.format_exception(exc))[-3000:]


def _write_results(res: dict[str, Any]) -> None:
    """latest.png, latest.json and latest.txt under RESULTS; the table also to stdout."""
    try:
        chart(res, RESULTS / "latest.png")
    except Exception as exc:  # noqa: BLE001
        res["failures"]["chart"] = repr(exc)
    text = table(res)
    res["table"] = text.splitlines()
    (RESULTS / "latest.json").write_text(json.dumps(_strip(res), indent=1, default=str) + "\n")
    (RESULTS / "latest.txt").write_text(text + "\n")
    print()
    print(text)
    print(
        f"\nwall time {res['meta']['wall_s']:.0f}s; results in {RESULTS}/latest.json, latest.png, latest.txt"
        + (
            f", {', '.join(res['distributed']['profile']['files'])}"
            if res.get("distributed", {}).get("profile", {}).get("files")
            else ""
        )
    )


if __name__ == "__main__":
    sys.exit(main())
