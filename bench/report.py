"""The report of a bench run, built on its typed results: the ratios (docs/performance.md, "The ratios"),
the table (``latest.txt``), the chart (``latest.png``) and ``latest.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from bench.probes import hops_text
from bench.results import BenchRun, CheckoutRun, Limits, Ratios, Saturation, Throughput, to_json

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


# --- ratios ----------------------------------------------------------------------------------------------


def ratios(run: BenchRun) -> Ratios:
    out = Ratios()
    lim, d = run.limits, run.distributed
    if d is not None and d.catalog is not None:
        hello = lim.hello.rps if lim else None
        cat = d.catalog
        for name, read, floor in (
            ("list", cat.list, cat.lean),
            ("list_db", cat.list_db, cat.lean),
            ("item", cat.item, cat.lean_item),
            ("item_db", cat.item_db, cat.lean_item),
            ("health", cat.health, None),
        ):
            if read is None or not read.rps:
                continue
            if hello:
                out.catalog_over_bare[name] = read.rps / hello
            if floor is not None and floor.rps:
                out.catalog_over_lean[name] = read.rps / floor.rps
        for name, page in d.web.items():
            if cat.list.rps and page.rps:
                out.web_over_catalog_api[name] = page.rps / cat.list.rps
    if d is not None and d.saturation is not None:
        best = d.saturation.best
        lean_best = d.lean_saga_saturation.best if d.lean_saga_saturation else None
        if lean_best is not None and lean_best.orders_per_s:
            out.checkout_saturation_over_lean_saga = best.orders_per_s / lean_best.orders_per_s
        db = best.db
        if lim and lim.pgbench.tps and db is not None and db.orders:
            idle_rate = d.idle.xact_commit_per_s if d.idle else 0.0
            # the services' background transactions (relay checks, jobs: idle rate x window) are not
            # the orders'
            net = max(0.0, db.xact_commit - idle_rate * db.seconds) / db.orders
            out.db_xacts_per_order_gross = db.xact_commit_per_order
            out.db_xacts_per_order = net
            out.db_rollbacks_per_order = db.rollbacks / db.orders
            # all six services' CPU (user+sys) per order PAID at saturation
            out.service_cpu_ms_per_order = best.service_cpu_ms_per_order
            if net > 0:
                out.db_bound_orders_per_s = lim.pgbench.tps / net
                out.checkout_over_db_bound = best.orders_per_s / out.db_bound_orders_per_s
    if run.embedded is not None and run.embedded.saturation is not None:
        out.embedded_cpu_ms_per_order = run.embedded.saturation.best.service_cpu_ms_per_order
    if d is not None and d.latency is not None:
        # the same at half the saturation rate: each event mostly alone, nothing shared by a batch
        out.latency_service_cpu_ms_per_order = d.latency.service_cpu_ms_per_order
        if lim is not None:
            _latency_ratios(out, lim, d.latency, d.lean_saga)
        if d.lean_saga is not None:
            _cpu_ratios(out, d.latency, d.lean_saga, d.lean_saga_layers)
    return out


# The services of the saga's path: the lean saga plays these three (bench/leansaga.py).
PATH_SERVICES = ("order-service", "inventory-service", "payment-service")


def _cpu_ratios(out: Ratios, latency: CheckoutRun, lean: CheckoutRun, layers: dict[str, CheckoutRun]) -> None:
    """CPU per order at the latency run's rate: ours ÷ the lean saga's, and each database layer's cost."""
    floor = lean.service_cpu_ms_per_order
    ours = latency.service_cpu_ms_per_order
    if not floor:
        return
    if ours:
        out.checkout_cpu_over_lean_saga = ours / floor
    cores = latency.processes.service_cpu_cores
    if latency.orders_per_s and all(svc in cores for svc in PATH_SERVICES):
        out.path_cpu_ms_per_order = sum(cores[svc] for svc in PATH_SERVICES) * 1000 / latency.orders_per_s
        out.path_cpu_over_lean_saga = out.path_cpu_ms_per_order / floor
    for layer, run in layers.items():
        ms = run.service_cpu_ms_per_order
        if ms:
            out.lean_saga_layer_cpu_ms_per_order[layer] = ms
            out.lean_saga_layer_cpu_over_driver[layer] = ms / floor


def _latency_ratios(out: Ratios, lim: Limits, latency: CheckoutRun, lean: CheckoutRun | None) -> None:
    """Ratios 3–6: the checkout's p50 (and p99) against the sums of its hops and against the lean saga."""
    p50, commit, hop, http = (
        latency.latency.p50_ms,
        lim.pg_commit.p50_ms,
        lim.kafka.p50_ms,
        lim.http_hop.p50_ms,
    )
    if not (p50 and commit and hop and http):
        return
    hops = HOPS_KAFKA if latency.observe == "kafka" else HOPS_POLL
    floor = hops["http"] * http + hops["commits"] * commit + hops["kafka"] * hop
    out.hops = dict(hops)
    out.minimal_checkout_ms = floor
    out.checkout_p50_over_minimal = p50 / floor
    step = lim.pg_step.p50_ms
    if step:
        # the same hops, each step's commit replaced by a step's whole transaction done by the driver
        # alone: what our stack adds above the database work every step must do
        steps = floor + hops["commits"] * (step - commit)
        out.lean_steps_checkout_ms = steps
        out.checkout_p50_over_lean_steps = p50 / steps
        sparse_step = lim.pg_step.sparse.p50_ms if lim.pg_step.sparse else None
        sparse_hop = lim.kafka.sparse.p50_ms if lim.kafka.sparse else None
        if sparse_step and sparse_hop:
            # the same, each step and hop timed 20 ms after the previous one (processes asleep)
            apart = hops["http"] * http + hops["commits"] * sparse_step + hops["kafka"] * sparse_hop
            out.lean_steps_apart_checkout_ms = apart
            out.checkout_p50_over_lean_steps_apart = p50 / apart
            # the machine's own floor of ratio 3: a saga of lean steps whose processes wake for each
            out.lean_steps_apart_over_minimal = apart / floor
    if lean is not None and lean.latency.p50_ms and lean.latency.p99_ms and latency.latency.p99_ms:
        # the lean saga at the same rate: the machine's floor of the latency ratios, end to end, and how
        # far above it our stack is (ratio 6)
        out.lean_saga_p50_over_minimal = lean.latency.p50_ms / floor
        out.lean_saga_p99_over_minimal = lean.latency.p99_ms / floor
        out.checkout_p50_over_lean_saga = p50 / lean.latency.p50_ms
        out.checkout_p99_over_lean_saga = latency.latency.p99_ms / lean.latency.p99_ms
        out.lean_saga_cpu_ms_per_order = lean.service_cpu_ms_per_order


# --- the table -------------------------------------------------------------------------------------------


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


def table(run: BenchRun) -> str:
    t = _Table()
    r = run.ratios
    if run.limits is not None:
        _limit_rows(t, run.limits)
    d, e = run.distributed, run.embedded
    if d is not None and d.catalog is not None:
        _catalog_rows(t, d, r)
        _web_rows(t, d, r)
    if d is not None:
        _checkout_rows(t, "dist", d.saturation, d.latency, d.lean_saga, run.limits, r, d.lean_saga_layers)
        _lean_saturation_rows(t, d.lean_saga_saturation, r)
    if e is not None:
        _checkout_rows(t, "embedded", e.saturation, e.latency, None, run.limits, r, {})
    _cost_rows(t, r)
    _replica_rows(t, run)
    _growth_rows(t, run)
    _rss_rows(t, run)
    return _render(t.rows, run)


def _limit_rows(t: _Table, lim: Limits) -> None:
    """The machine's own limits: bare ASGI, one HTTP hop, pgbench, one commit, Kafka."""
    h = lim.hello
    t.row(
        "bare ASGI GET /hello (uvicorn+FastAPI)",
        f"{_f(h.rps, '{:.0f}')} req/s, p99 {_f(h.p99_ms)} ms",
        h.gen_cpu_cores,
        h.errors,
        other=h.unrelated_cpu_cores,
    )
    ho = lim.hello_old_framework
    if ho is not None:
        ours = h.rps / ho.rps if h.rps and ho.rps else None
        t.row(
            "  same, FastAPI 0.111 / Starlette 0.37 / pydantic 2.7",
            f"{_f(ho.rps, '{:.0f}')} req/s, p99 {_f(ho.p99_ms)} ms",
            ho.gen_cpu_cores,
            ho.errors,
            f"ours ÷ this = {_f(ours, '{:.2f}')}",
            other=ho.unrelated_cpu_cores,
        )
    hh = lim.http_hop
    t.row(
        "  one HTTP round trip (sequential)", f"p50 {_f(hh.p50_ms, '{:.2f}')} ms", hh.gen_cpu_cores, hh.errors
    )
    p = lim.pgbench
    t.row(
        f"pgbench TPC-B ({p.clients} clients, scale {p.scale})",
        f"{_f(p.tps, '{:.0f}')} tps, avg {_f(p.latency_avg_ms, '{:.2f}')} ms",
        None,
        p.failed,
    )
    c = lim.pg_commit.latency
    t.row(
        "  one INSERT+COMMIT (asyncpg)", f"p50 {_f(c.p50_ms, '{:.2f}')} ms, p99 {_f(c.p99_ms, '{:.2f}')} ms"
    )
    st = lim.pg_step
    t.row(
        "  one saga step's transaction (asyncpg)",
        f"p50 {_f(st.latency.p50_ms, '{:.2f}')} ms, p99 {_f(st.latency.p99_ms, '{:.2f}')} ms; "
        f"20 ms apart p50 {_f(st.sparse.p50_ms if st.sparse else None, '{:.2f}')} ms; "
        f"client CPU {_cpu_pair(st.cpu_ms, st.sparse.cpu_ms if st.sparse else None)} ms per step",
    )
    driver = lim.pg_step_layers.get("asyncpg")
    for layer, probe in lim.pg_step_layers.items():
        over = probe.cpu_ms / driver.cpu_ms if driver and driver.cpu_ms and probe.cpu_ms else None
        t.row(
            f"    a lean step on {STEP_LAYER_NAMES[layer]}",
            f"p50 {_f(probe.latency.p50_ms, '{:.2f}')} ms; CPU {_f(probe.cpu_ms, '{:.2f}')} ms per step",
            ratio="" if over is None else f"CPU ÷ the driver's = {over:.2f}",
        )
    k = lim.kafka
    t.row(
        "Kafka produce->consume round trip",
        f"p50 {_f(k.latency.p50_ms, '{:.2f}')} ms, p99 {_f(k.latency.p99_ms, '{:.2f}')} ms; "
        f"20 ms apart p50 {_f(k.sparse.p50_ms if k.sparse else None, '{:.2f}')} ms; "
        f"burst {_f(k.burst_msgs_per_s, '{:.0f}')} msg/s; "
        f"client CPU {_cpu_pair(k.cpu_ms, k.sparse.cpu_ms if k.sparse else None)} ms per hop",
    )


def _cpu_pair(awake: float | None, asleep: float | None) -> str:
    """A probe's client CPU per call: back to back / 20 ms apart."""
    return f"{_f(awake, '{:.2f}')} / {_f(asleep, '{:.2f}')}"


def _catalog_rows(t: _Table, d: Any, r: Ratios) -> None:
    """Catalog reads (lean floor, list, item, health) with their ratios to the bare endpoint and, for the
    list and the item, to the lean floor's same read."""
    cat = d.catalog
    reads: tuple[tuple[str, str, Throughput | None], ...] = (
        ("lean", "lean floor GET /products?limit=20", cat.lean),
        ("list", "catalog GET /products?limit=20", cat.list),
        ("list_db", "  same, Cache-Control: no-cache (database)", cat.list_db),
        ("lean", "lean floor GET /products/{id}", cat.lean_item),
        ("item", "catalog GET /products/{id}", cat.item),
        ("item_db", "  same, Cache-Control: no-cache (database)", cat.item_db),
        ("health", "GET /health (full middleware)", cat.health),
    )
    for key, label, c in reads:
        if c is None:
            continue
        ratio = "" if key == "lean" else f"÷ bare = {_f(r.catalog_over_bare.get(key), '{:.3f}')}"
        if key in r.catalog_over_lean:
            ratio += f", ÷ lean = {r.catalog_over_lean[key]:.2f}"
        cpu = c.server_cpu_ms_per_request
        t.row(
            label,
            f"{_f(c.rps, '{:.0f}')} req/s, p99 {_f(c.p99_ms)} ms"
            + (f", {cpu:.2f} ms CPU/req" if cpu else ""),
            c.gen_cpu_cores,
            c.errors,
            ratio,
            other=c.unrelated_cpu_cores,
        )


def _web_rows(t: _Table, d: Any, r: Ratios) -> None:
    """The web front's pages, each next to the catalog API list it calls (docs/web.md)."""
    for name in ("home", "catalog", "product"):
        page = d.web.get(name)
        if page is None:
            continue
        cpu = page.server_cpu_ms_per_request
        t.row(
            f"web page {name} ({page.path.split(' ', 2)[1]})",
            f"{_f(page.rps, '{:.0f}')} pages/s, p99 {_f(page.p99_ms)} ms"
            + (f", {cpu:.2f} ms web CPU/page" if cpu else ""),
            page.gen_cpu_cores,
            page.errors,
            f"÷ catalog API list = {_f(r.web_over_catalog_api.get(name), '{:.2f}')}",
            other=page.unrelated_cpu_cores,
        )


def _checkout_rows(
    t: _Table,
    mode: str,
    sat: Any,
    latency: CheckoutRun | None,
    lean: CheckoutRun | None,
    lim: Limits | None,
    r: Ratios,
    layers: dict[str, CheckoutRun],
) -> None:
    """One mode's checkout: the saturation runs (closed loop), then the latency at a fixed rate, then the lean
    saga at that rate on the driver and on the services' database layers."""
    if sat is not None:
        best = sat.best
        for run in sat.runs:
            is_best = run is best
            ratio = ""
            if mode == "dist" and is_best and r.checkout_over_db_bound is not None and lim is not None:
                ratio = (
                    f"÷ (pgbench {_f(lim.pgbench.tps, '{:.0f}')} ÷ "
                    f"{r.db_xacts_per_order:.1f} db xacts/order) = {r.checkout_over_db_bound:.3f}"
                )
            t.row(
                f"checkout {mode}: {run.concurrency} customers{' (best)' if is_best else ''}",
                f"{run.orders_per_s:.1f} PAID/s, p50 {_f(run.latency.p50_ms, '{:.0f}')} ms",
                run.gen_cpu_cores,
                run.error_count,
                ratio,
                other=run.processes.unrelated_cpu_cores,
            )
    if latency is not None:
        ratio = ""
        if mode == "dist" and r.checkout_p50_over_minimal is not None:
            ratio = f"p50 ÷ minimal hops {r.minimal_checkout_ms:.1f} ms = {r.checkout_p50_over_minimal:.2f}"
            if r.checkout_p50_over_lean_steps is not None:
                ratio += (
                    f"; ÷ lean steps {r.lean_steps_checkout_ms:.1f} ms = {r.checkout_p50_over_lean_steps:.2f}"
                )
            if r.checkout_p50_over_lean_steps_apart is not None:
                ratio += (
                    f"; ÷ the same 20 ms apart {r.lean_steps_apart_checkout_ms:.1f} ms = "
                    f"{r.checkout_p50_over_lean_steps_apart:.2f} (which is itself "
                    f"{r.lean_steps_apart_over_minimal:.2f} × the minimal hops)"
                )
        _latency_row(
            t, f"checkout {mode}: latency at {latency.rate}/s (open loop)", latency, "service CPU", ratio
        )
        if latency.hops:
            t.row("  its hops, p50 (event to event)", hops_text(latency.hops), None, None)
    if lean is not None:
        ratio = ""
        if r.lean_saga_p50_over_minimal is not None:
            ratio = (
                f"p50 ÷ minimal hops = {r.lean_saga_p50_over_minimal:.2f}, p99 ÷ minimal hops = "
                f"{r.lean_saga_p99_over_minimal:.2f}; ours ÷ this: "
                f"p50 {r.checkout_p50_over_lean_saga:.2f}, p99 {r.checkout_p99_over_lean_saga:.2f}"
            )
        _latency_row(t, f"  the lean saga at {lean.rate}/s (floor)", lean, "CPU", ratio)
        if lean.hops:
            t.row("  its hops, p50 (event to event)", hops_text(lean.hops), None, None)
        if r.checkout_cpu_over_lean_saga is not None:
            path = ""
            if r.path_cpu_over_lean_saga is not None:
                path = (
                    f"; order + inventory + payment {r.path_cpu_ms_per_order:.1f} ms = "
                    f"{r.path_cpu_over_lean_saga:.2f} ×"
                )
            t.row(
                "  ours ÷ the lean saga, CPU per order",
                f"{r.checkout_cpu_over_lean_saga:.2f} × (all six services; ours also notifies){path}",
                None,
                None,
            )
    for layer, run in layers.items():
        over = r.lean_saga_layer_cpu_over_driver.get(layer)
        _latency_row(
            t,
            f"  the lean saga on SQLAlchemy {LAYER_NAMES[layer]}",
            run,
            "CPU",
            "" if over is None else f"CPU ÷ the lean saga on the driver = {over:.2f}",
        )


def _lean_saturation_rows(t: _Table, sat: Saturation | None, r: Ratios) -> None:
    """The lean saga in the saturation's closed loop, its best run next to ours."""
    if sat is None:
        return
    best, over = sat.best, r.checkout_saturation_over_lean_saga
    for run in sat.runs:
        is_best = run is best
        t.row(
            f"  the lean saga: {run.concurrency} customers{' (best)' if is_best else ''}",
            f"{run.orders_per_s:.1f} PAID/s, p50 {_f(run.latency.p50_ms, '{:.0f}')} ms",
            run.gen_cpu_cores,
            run.error_count,
            f"ours at saturation ÷ this = {over:.2f}" if is_best and over is not None else "",
            other=run.processes.unrelated_cpu_cores,
        )


STEP_LAYER_NAMES = {
    "asyncpg": "the driver (a pool)",
    "core": "SQLAlchemy Core",
    "session": "an ORM session, statements",
    "orm": "an ORM session and objects",
}
LAYER_NAMES = {
    "core": "Core (a connection)",
    "session": "ORM session, statements only",
    "orm": "ORM session and objects (as the services)",
}


def _latency_row(t: _Table, label: str, run: CheckoutRun, cpu: str, ratio: str) -> None:
    """One open-loop latency run: its percentiles and the CPU per order of the processes it measured."""
    lat = run.latency
    t.row(
        label,
        f"p50 {_f(lat.p50_ms, '{:.0f}')} / p95 {_f(lat.p95_ms, '{:.0f}')} / "
        f"p99 {_f(lat.p99_ms, '{:.0f}')} ms "
        f"(n={lat.n}); {_f(run.service_cpu_ms_per_order)} ms {cpu} per order",
        run.gen_cpu_cores,
        run.error_count,
        ratio,
        other=run.processes.unrelated_cpu_cores,
    )


def _cost_rows(t: _Table, r: Ratios) -> None:
    """CPU, database transactions and rollbacks per order PAID."""
    if r.service_cpu_ms_per_order is not None or r.db_rollbacks_per_order is not None:
        t.row(
            "checkout dist: cost per order PAID (at best)",
            f"{_f(r.service_cpu_ms_per_order, '{:.1f}')} ms service CPU; "
            f"{_f(r.db_xacts_per_order)} db xacts (gross {_f(r.db_xacts_per_order_gross)}), "
            f"{_f(r.db_rollbacks_per_order, '{:.2f}')} rollbacks",
        )
    if r.embedded_cpu_ms_per_order:
        t.row("checkout embedded: cost per order PAID (at best)", f"{r.embedded_cpu_ms_per_order:.1f} ms CPU")


def _replica_rows(t: _Table, run: BenchRun) -> None:
    """Checkout through the gateway with 1 and 2 replicas of the busiest services."""
    if run.replicas is None:
        return
    speedup = run.replicas.speedup
    for n, rep in sorted(run.replicas.runs.items()):
        cpu = rep.service_cpu_cores_by_service
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])[:3])
        t.row(
            f"checkout via gateway, {n} replica(s) of order/payment/inventory",
            f"{rep.orders_per_s:.1f} orders/s, "
            f"machine busy {rep.processes.machine_busy_cores:.2f} cores ({top})",
            rep.gen_cpu_cores,
            rep.error_count,
            f"x{speedup:.2f}" if n == 2 and speedup else "",
            other=rep.processes.unrelated_cpu_cores,
        )


def _growth_rows(t: _Table, run: BenchRun) -> None:
    """Each request's p50 at each table size (bench/phases/growth.py); ratio: largest ÷ smallest."""
    if run.growth is None:
        return
    for point in run.growth.points:
        sizes = sorted(point.p50_ms)
        t.row(
            f"growth {point.database} {point.request} (p50 by rows)",
            ", ".join(f"{size:,}: {point.p50_ms[size]:.2f} ms" for size in sizes),
            ratio=f"x{point.growth:.2f}" if point.growth else "",
            other=point.other_cpu_cores,
        )


def _rss_rows(t: _Table, run: BenchRun) -> None:
    """Memory of each process, idle and under load."""
    for mode in (run.distributed, run.embedded):
        if mode is None or mode.idle is None:
            continue
        peak = mode.saturation.best.processes.peak_rss_mb if mode.saturation else {}
        for n, v in mode.idle.rss_mb.items():
            t.row(f"RSS {n}", f"idle {v:.0f} MB, under load {_f(peak.get(n), '{:.0f}')} MB")


def _render(rows: list[tuple[str, ...]], run: BenchRun) -> str:
    """The rows as aligned columns, with the error total, the legend and the machine's load."""
    head = ("figure", "value", "gen CPU", "other CPU", "errors", "ratio")
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(6)]
    line = "  ".join("-" * x for x in w)
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head)), line]
    out += ["  ".join(c.ljust(w[i]) for i, c in enumerate(rw)) for rw in rows]
    total_err = sum(int(x[4]) for x in rows if x[4].isdigit())
    la0 = run.meta.get("machine", {}).get("loadavg_at_start")
    la1 = run.meta.get("loadavg_at_end")
    out += [
        line,
        f"errors during the run: {total_err}",
        "gen CPU = the load generator's own CPU (user+sys ÷ wall, in cores; "
        f"1.00 = one of {psutil.cpu_count()} "
        "cores); other CPU = cores used meanwhile by processes unrelated to the measurement",
        f"load average at start {_f(la0[0] if la0 else None, '{:.2f}')}, "
        f"at end {_f(la1[0] if la1 else None, '{:.2f}')}; bench processes at nice {run.meta.get('nice', 0)}",
    ]
    return "\n".join(out)


# --- the chart and the files -----------------------------------------------------------------------------


def chart(run: BenchRun, path: Path) -> None:
    """Throughputs (log scale) and the checkout latency CDFs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    lim, d, e = run.limits, run.distributed, run.embedded
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    bars: list[tuple[str, float]] = []
    if lim is not None and lim.hello.rps:
        bars.append(("bare /hello\nreq/s", lim.hello.rps))
    if d is not None and d.catalog is not None:
        for read, label in ((d.catalog.list, "catalog list\nreq/s"), (d.catalog.item, "catalog item\nreq/s")):
            if read.rps:
                bars.append((label, read.rps))
    if lim is not None and lim.pgbench.tps:
        bars.append(("pgbench\ntps", lim.pgbench.tps))
    if run.ratios.db_bound_orders_per_s:
        bars.append(("DB-bound\norders/s", run.ratios.db_bound_orders_per_s))
    if d is not None and d.saturation is not None:
        bars.append(("checkout\ndistributed\nPAID/s", d.saturation.best.orders_per_s))
    if e is not None and e.saturation is not None:
        bars.append(("checkout\nembedded\nPAID/s", e.saturation.best.orders_per_s))
    if bars:
        ax1.bar([b[0] for b in bars], [b[1] for b in bars], color="#4c72b0")
        ax1.set_yscale("log")
        for i, (_, v) in enumerate(bars):
            ax1.text(i, v, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        ax1.set_title("throughput (log scale)")
        ax1.tick_params(axis="x", labelsize=7, rotation=30)
    runs = (
        ("distributed", d.latency if d else None),
        ("lean saga (floor)", d.lean_saga if d else None),
        ("embedded", e.latency if e else None),
    )
    for label, latency in runs:
        if latency is not None and latency.latencies_s:
            xs = sorted(x * 1000 for x in latency.latencies_s)
            ax2.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=f"{label} @ {latency.rate}/s")
    if run.ratios.minimal_checkout_ms:
        ax2.axvline(run.ratios.minimal_checkout_ms, color="grey", ls="--", label="minimal hop sum")
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


def write(run: BenchRun, out: Path) -> str:
    """``latest.png``, ``latest.json`` and ``latest.txt`` under ``out``; returns the table."""
    try:
        chart(run, out / "latest.png")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
        run.failures["chart"] = repr(exc)
    text = table(run)
    run.table = text.splitlines()
    (out / "latest.json").write_text(json.dumps(to_json(run), indent=1, default=str) + "\n")
    (out / "latest.txt").write_text(text + "\n")
    return text
