"""The local distributed mode (what ``mart dist up`` runs) on fresh databases and a fresh Kafka namespace:
idle, catalog reads, the web front's pages, checkout saturation, a profiled checkout run, the latency run,
then the lean saga at the same rate and in the same closed loop."""

from __future__ import annotations

import time
import traceback
from typing import Any

from bench import profiling
from bench.console import say
from bench.phases import Context
from bench.phases.catalog import catalog
from bench.phases.checkout import checkout_run, fixed_rate, idle_window, saturation
from bench.phases.web import web_pages
from bench.results import CheckoutRun, Distributed, Profile, Saturation

# The services every order goes through: profiled side by side during one run.
SAGA = ("order-service", "inventory-service", "payment-service", "notification-service")
# What the load generator needs of a set-up to drive the lean saga (it has no customers or products).
LEAN_SETUP = {"customer_token": "lean", "checkout_product_ids": ["lean"]}


def distributed(ctx: Context) -> Distributed:
    from bench.stack import DistStack, setup

    b = ctx.budget
    stack = DistStack(ctx.admin_password, say=say)
    say("distributed mode: mart_cli.dist (what `mart dist up` runs), fresh databases and Kafka namespace")
    try:
        out = Distributed(up_s=stack.up())
        say(f"  six services ready in {out.up_s:.1f}s: {stack.pids()}")
        st = setup(stack.bases, ctx.admin_password, n_products=b.n_products, n_checkout=b.n_checkout, say=say)
        out.setup_s = st["setup_s"]
        say(f"  setup: customer, {len(st['product_ids'])} products, stock, read models in {out.setup_s:.1f}s")
        out.idle = idle_window(stack, b.idle_s)
        say("catalog reads (wrk, one product-service process)")
        out.catalog = catalog(ctx, stack, st["product_ids"])
        say("web front pages (wrk, one web-service process calling the services)")
        try:
            out.web = web_pages(ctx, stack, st["product_ids"][len(st["product_ids"]) // 2])
        except Exception as exc:  # noqa: BLE001 - the run goes on; the table says the figure is missing
            say(f"  web pages FAILED: {exc!r}")
        say("checkout saturation (closed loop; PAID observed from the broker: no polling load)")
        out.saturation = saturation(stack, st, b.sat_conc, b.sat_max_conc, b.sat_s, "kafka", b.poll_s, True)
        best = out.saturation.best
        cores = best.processes.service_cpu_cores
        say(
            "  CPU at the best point (cores): "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1]))
            + ", "
            + ", ".join(f"{k} {v:.2f}" for k, v in best.processes.infra_cpu_cores.items())
        )
        say(f"profile: py-spy (--gil) and perf (on-CPU) on {', '.join(SAGA)} during a closed-loop run")
        try:
            out.profile = profile_checkout(ctx, stack, st, SAGA, best.concurrency or 16)
        except Exception as exc:  # noqa: BLE001 - the run goes on without a profile
            out.profile = Profile(files=[], summary={}, error=repr(exc))
        say(f"  {out.profile.error or 'saved ' + ', '.join(out.profile.files)}")
        rate = max(1.0, round(best.orders_per_s * 0.5, 1))
        say(
            f"checkout latency at a fixed arrival rate ({rate}/s = 50% of saturation; "
            "PAID observed from the broker)"
        )
        out.latency = fixed_rate(stack, st, rate, b.lat_s, b.poll_s, "kafka")
        out.pids = stack.pids()
    finally:
        say("distributed mode: stopping the six services (PostgreSQL and Kafka stay up)")
        stack.down()
    if out.latency is not None and out.latency.rate:
        try:
            out.lean_saga = lean_saga(ctx, stack, out.latency.rate)
            for layer in ("core", "session", "orm"):
                out.lean_saga_layers[layer] = lean_saga(ctx, stack, out.latency.rate, layer)
            out.lean_saga_saturation = lean_saga_saturation(ctx, stack)
        except Exception as exc:  # noqa: BLE001 - the figures of our stack stand without their floor
            say(f"lean saga FAILED: {exc!r}")
            out.lean_saga_error = "".join(traceback.format_exception(exc))[-3000:]
    return out


def lean_saga(ctx: Context, dist: Any, rate: float, layer: str = "asyncpg") -> CheckoutRun:
    """The lean saga (bench/leansaga.py) at the latency run's rate, driven and observed the same way: the
    machine's floor for the checkout latency, with the processes, hops and commits of the saga's path.
    ``layer``: its steps on the driver alone (the floor), or on the services' SQLAlchemy engine (``core``)
    or unit of work (``session``): what each layer costs per order."""
    from bench.stack import LeanSagaStack

    b = ctx.budget
    say(f"the lean saga (bench/leansaga.py: the path's work only, on {layer}) at the same {rate}/s")
    lean = LeanSagaStack(dist, layer)
    try:
        lean.up()
        # warm-up: first connections, the groups' first fetches
        checkout_run(
            lean,
            LEAN_SETUP,
            loop="open",
            rate=rate,
            duration=4,
            observe="kafka",
            poll_s=b.poll_s,
            count_db=False,
        )
        return fixed_rate(lean, LEAN_SETUP, rate, b.lat_s, b.poll_s, "kafka")
    finally:
        lean.down()


def lean_saga_saturation(ctx: Context, dist: Any) -> Saturation:
    """The lean saga (on the driver) in the saturation's closed loop: how many orders per second any
    implementation of the saga's path reaches on this machine in this hour."""
    from bench.stack import LeanSagaStack

    b = ctx.budget
    say("the lean saga's saturation (closed loop, the same customers; PAID observed from the broker)")
    lean = LeanSagaStack(dist)
    try:
        lean.up()
        return saturation(lean, LEAN_SETUP, b.sat_conc, b.sat_max_conc, b.sat_s, "kafka", b.poll_s, False)
    finally:
        lean.down()


def profile_checkout(
    ctx: Context, stack: Any, setup: dict[str, Any], svcs: tuple[str, ...], conc: int
) -> Profile:
    """py-spy (sampling, 100 Hz, attached to the running services, one sampler each) and perf during one
    closed-loop checkout run: ``profile-checkout-<service>.collapsed.txt`` per service and
    ``profile-checkout.txt``, every service's summary after the four together (self time by package,
    weighted by their CPU per order)."""
    duration = ctx.budget.profile_s
    cmd = profiling.py_spy_cmd()
    if cmd is None:
        return Profile(files=[], summary={}, error="py-spy not available (uvx --from py-spy py-spy)")
    ctx.out.mkdir(parents=True, exist_ok=True)
    for old in ctx.out.glob("profile-checkout*.collapsed.txt"):
        old.unlink()
    pids = stack.pids()
    raws = {svc: ctx.out / f"profile-checkout-{svc}.collapsed.txt" for svc in svcs}
    spies = {svc: profiling.py_spy_record(cmd, pids[svc], int(duration), raws[svc]) for svc in svcs}
    perf_data = ctx.out / "profile-checkout.perf.data"
    oncpu = profiling.perf_record({pids[svc]: svc for svc in svcs}, int(duration) - 1, perf_data)
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
    during = f"a closed-loop checkout run ({run.orders_per_s:.1f} orders/s while profiled)"
    summaries: dict[str, dict[str, Any]] = {}
    for svc, spy in spies.items():
        out_txt = spy.communicate(timeout=120)[0].decode(errors="replace")
        if spy.returncode != 0 or not raws[svc].exists():
            return Profile(files=[], summary={}, error=f"py-spy failed on {svc}: {out_txt[-500:]}")
        summaries[svc] = profiling.summarize_profile(raws[svc], svc, during)
    cpu_ms = {
        svc: 1000 * run.processes.service_cpu_cores.get(svc, 0.0) / max(run.orders_per_s, 1e-9)
        for svc in svcs
    }
    together = profiling.packages_together(summaries, cpu_ms)
    split = profiling.perf_split(oncpu, perf_data, {pids[svc]: svc for svc in svcs})
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
    (ctx.out / "profile-checkout.txt").write_text(
        "\n".join(head) + "\n" + "\n".join(f"===== {svc}\n{summ['text']}" for svc, summ in summaries.items())
    )
    return Profile(
        files=[*(raws[svc].name for svc in svcs), "profile-checkout.txt"],
        summary={
            "services": list(svcs),
            "orders_per_s_while_profiled": run.orders_per_s,
            "cpu_ms_per_order_while_profiled": cpu_ms,
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
        },
    )
