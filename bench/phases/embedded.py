"""The embedded mode: ``mart run --no-seed`` (one process, SQLite, the in-process bus) on a throwaway data
dir; checkout saturation and latency, PAID observed from the bus log the mart writes."""

from __future__ import annotations

import time

from bench.console import say
from bench.phases import Context
from bench.phases.checkout import fixed_rate, saturation
from bench.results import Embedded, Idle
from bench.sampling import rss_mb


def embedded(ctx: Context) -> Embedded:
    from bench.stack import EmbeddedStack, setup

    b = ctx.budget
    stack = EmbeddedStack(ctx.admin_password, say=say)
    say(f"embedded mode: `mart run --no-seed` on :{stack.port} (SQLite + in-process bus, one process)")
    try:
        out = Embedded(up_s=stack.up())
        st = setup(stack.bases, ctx.admin_password, n_products=b.n_checkout, n_checkout=b.n_checkout, say=say)
        out.setup_s = st["setup_s"]
        time.sleep(1)
        out.idle = Idle(rss_mb=rss_mb(stack.pids()))
        # PAID observed as in the distributed run: from the events (here the bus log the mart writes, read
        # by the load generator every poll_s), not by polling the services over HTTP
        say(
            "checkout saturation, embedded (closed loop; PAID observed from the bus log every "
            f"{b.poll_s * 1000:.0f} ms: no polling load)"
        )
        out.saturation = saturation(
            stack, st, b.emb_conc, b.emb_max_conc, b.emb_sat_s, "bus", b.poll_s, False
        )
        rate = max(1.0, round(out.saturation.best.orders_per_s * 0.5, 1))
        say(f"checkout latency, embedded, at {rate}/s (PAID observed from the bus log)")
        out.latency = fixed_rate(stack, st, rate, b.emb_lat_s, b.poll_s, "bus")
    finally:
        stack.down()
    return out
