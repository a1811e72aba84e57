"""Checkout runs of the load generator (a separate process) against a running stack: a closed loop of
customers, an open loop at a fixed rate, the saturation search, and the idle window before the load."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from bench import probes
from bench.console import say
from bench.results import CheckoutRun, DbCounters, Idle, Latency, Saturation
from bench.sampling import Sampler, rss_mb

#: a closed-loop step that doubled the customers and gained less than this is on the plateau
PLATEAU_GAIN = 0.05


class Stack(Protocol):
    """What a checkout run needs of the stack it drives (``bench.stack``)."""

    bases: Any

    def pids(self) -> dict[str, int]: ...


def checkout_run(
    stack: Stack,
    setup: dict[str, Any],
    *,
    loop: str,
    conc: int = 16,
    rate: float = 0,
    duration: float,
    observe: str,
    poll_s: float,
    count_db: bool,
) -> CheckoutRun:
    """One run: ``loop="closed"`` (``conc`` customers, each orders again once PAID) or ``"open"`` (orders
    at ``rate`` per second); PAID observed from the broker (``observe="kafka"``) or the bus log (``"bus"``).
    ``count_db``: the PostgreSQL transactions of the stack's databases over the run."""
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
    db = None
    if count_db:
        time.sleep(1.2)  # backends flush pg_stat_database counters at most once a second
        db = DbCounters.of(
            probes.pg_delta(c0, probes.pg_counters(dbs)), res["completed"] + res["warmup_completed"]
        )
    return CheckoutRun(
        loop=loop,
        concurrency=conc if loop == "closed" else None,
        rate=rate or None,
        observe=observe,
        poll_s=poll_s if observe != "kafka" else None,
        orders_per_s=res["orders_per_s"],
        completed=res["completed"],
        completed_in_window=res["completed_in_window"],
        window_s=res["window_s"],
        wall_s=res["wall_s"],
        errors=res["errors"],
        warmup_completed=res["warmup_completed"],
        warmup_errors=res["warmup_errors"],
        requests=res["requests"],
        gen_cpu_cores=res["gen_cpu_cores"],
        gen_cpu_s=res["gen_cpu_s"],
        latency=Latency.of(probes.lat_summary(res["latencies_s"])),
        latencies_s=res["latencies_s"],
        processes=smp.processes(res["gen_cpu_cores"]),
        db=db,
    )


def concurrencies(concs: tuple[int, ...], max_conc: int, runs: list[CheckoutRun]) -> Iterator[int]:
    """The given customer counts, then doubled while the last doubling still gained more than
    ``PLATEAU_GAIN`` (a throughput still growing is not saturation yet), up to ``max_conc``."""
    yield from concs
    conc = concs[-1]
    while conc * 2 <= max_conc and len(runs) >= 2:
        last, before = runs[-1].orders_per_s, runs[-2].orders_per_s
        if last <= before * (1 + PLATEAU_GAIN):
            return
        conc *= 2
        yield conc


def saturation(
    stack: Stack,
    setup: dict[str, Any],
    concs: tuple[int, ...],
    max_conc: int,
    duration: float,
    observe: str,
    poll_s: float,
    count_db: bool,
) -> Saturation:
    """Closed-loop runs with more and more customers until the throughput stops growing."""
    runs: list[CheckoutRun] = []
    for conc in concurrencies(concs, max_conc, runs):
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
        per_order = f", {r.db.xact_commit_per_order:.1f} db xacts/order" if r.db and r.db.orders else ""
        say(
            f"  closed loop {conc:>3} customers: {r.orders_per_s:.1f} orders PAID/s, p50 "
            f"{r.latency.p50_ms or 0:.0f} ms, errors {r.error_count}, "
            f"generator cpu {r.gen_cpu_cores:.2f} cores{per_order}; "
            f"machine busy {r.processes.machine_busy_cores:.2f} cores"
        )
        runs.append(r)
    return Saturation(runs)


def fixed_rate(
    stack: Stack, setup: dict[str, Any], rate: float, duration: float, poll_s: float, observe: str
) -> CheckoutRun:
    """The open-loop latency run at ``rate`` orders per second; observed on Kafka, with the p50 of each of the
    saga's hops, read back from the events' timestamps (``probes.saga_hops``)."""
    since = time.time()
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
    lat = r.latency
    say(
        f"  open loop {rate:.1f} orders/s: p50 {lat.p50_ms or 0:.0f} / p95 {lat.p95_ms or 0:.0f} / p99 "
        f"{lat.p99_ms or 0:.0f} ms, errors {r.error_count}, generator cpu {r.gen_cpu_cores:.2f}"
    )
    namespace = getattr(stack, "namespace", "")
    if observe == "kafka" and namespace:
        r.hops = probes.saga_hops_since(namespace, since)
        say("  hops, p50: " + probes.hops_text(r.hops))
    return r


def idle_window(stack: Any, seconds: float) -> Idle:
    """The services at rest: their memory, CPU and database transactions per second (relay checks, jobs)."""
    dbs = list(stack.dbs.values())
    time.sleep(1.2)
    c0 = probes.pg_counters(dbs)
    with Sampler(stack.pids()) as smp:
        time.sleep(seconds)
    time.sleep(1.2)
    d = probes.pg_delta(c0, probes.pg_counters(dbs))
    return Idle(
        rss_mb=rss_mb(stack.pids()),
        cpu_cores=dict(smp.cpu_cores),
        machine_busy_cores=smp.machine_busy_cores,
        xact_commit_per_s=d["xact_commit"] / d["seconds"],
        per_db=d["per_db"],
    )
