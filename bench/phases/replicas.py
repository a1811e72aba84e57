"""Checkout saturation through the built-in gateway with 1, then 2 replicas of the busiest services, in
one run on the same databases (docs/scaling.md). CPU per service and of the whole machine is reported: on 2
cores the second replica has no free core to run on, which the figures show."""

from __future__ import annotations

from typing import Any

import psutil

from bench.console import say
from bench.phases import Context
from bench.phases.checkout import checkout_run
from bench.results import Replicas

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


def per_service(cores: dict[str, float]) -> dict[str, float]:
    """CPU cores summed over the replicas of each service (``order-service-2`` counts as order-service)."""
    out: dict[str, float] = {}
    for label, v in cores.items():
        name = label if label == "gateway" else label.rsplit("-service", 1)[0] + "-service"
        out[name] = out.get(name, 0.0) + v
    return out


def replicas(ctx: Context) -> Replicas:
    from bench.stack import DistStack, setup

    b = ctx.budget
    out = Replicas(scaled=[p.replace("_", "-") for p in BUSIEST])
    stack = DistStack(ctx.admin_password, say=say, gateway=True)
    say("replicas: checkout through the built-in gateway, 1 then 2 replicas of " + ", ".join(out.scaled))
    try:
        out.up_s = stack.up()
        st = setup(stack.bases, ctx.admin_password, n_products=b.n_products, n_checkout=b.n_checkout, say=say)
        via = _ViaGateway(stack)
        for n in (1, 2):
            if n > 1:
                took = stack.scale(dict.fromkeys(BUSIEST, n))
                say(f"  {n} replicas of the busiest services ready in {took:.1f}s")
            r = checkout_run(
                via,
                st,
                loop="closed",
                conc=b.rep_conc,
                duration=b.rep_s,
                observe="kafka",
                poll_s=b.poll_s,
                count_db=False,
            )
            r.service_cpu_cores_by_service = per_service(r.processes.service_cpu_cores)
            out.runs[n] = r
            say(
                f"  {n} replica(s): {r.orders_per_s:.1f} orders PAID/s at {b.rep_conc} customers, p50 "
                f"{r.latency.p50_ms or 0:.0f} ms, errors {r.error_count}; machine busy "
                f"{r.processes.machine_busy_cores:.2f} of {psutil.cpu_count()} cores; services "
                + ", ".join(
                    f"{k} {v:.2f}"
                    for k, v in sorted(r.service_cpu_cores_by_service.items(), key=lambda kv: -kv[1])
                )
            )
    finally:
        say("replicas: stopping the services and the gateway (PostgreSQL and Kafka stay up)")
        stack.down()
    return out
