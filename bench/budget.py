"""How long and how hard each phase of a bench run measures: the full run, and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    wrk_s: int = 10  # each wrk run
    wrk_conns: int = 32
    seq_n: int = 1000  # sequential HTTP round trips
    pgbench_s: int = 15
    pgbench_scale: int = 8
    pgbench_clients: int = 8
    commit_n: int = 500  # sequential commits, lean saga steps
    kafka_n: int = 300  # sequential Kafka round trips
    kafka_burst: int = 5000
    n_products: int = 200  # the catalog
    n_checkout: int = 20  # products the checkout orders from
    sat_conc: tuple[int, ...] = (8, 16, 32)  # closed-loop customers, then doubled while it still gains
    sat_max_conc: int = 128
    sat_s: float = 20
    profile_s: int = 12
    lat_s: float = 30  # the open-loop latency run
    poll_s: float = 0.01  # how often the embedded observer reads the bus log
    emb_conc: tuple[int, ...] = (8, 16)
    emb_max_conc: int = 64
    emb_sat_s: float = 15
    emb_lat_s: float = 20
    idle_s: float = 5  # the services' background rate, measured before the load
    rep_conc: int = 16  # the replica runs
    rep_s: float = 20
    growth_products: tuple[int, ...] = (200, 10_000, 100_000)  # the growth phase's table sizes
    growth_orders: tuple[int, ...] = (10_000, 1_000_000)
    growth_n: int = 200  # rounds of its requests


FULL = Budget()
QUICK = replace(
    FULL,
    wrk_s=4,
    seq_n=300,
    pgbench_s=5,
    commit_n=200,
    kafka_n=100,
    kafka_burst=2000,
    n_products=60,
    n_checkout=10,
    sat_conc=(8, 16),
    sat_max_conc=32,
    sat_s=8,
    profile_s=6,
    lat_s=10,
    emb_conc=(8,),
    emb_max_conc=16,
    emb_sat_s=8,
    emb_lat_s=8,
    idle_s=3,
    rep_s=8,
    growth_products=(200, 10_000),
    growth_orders=(10_000, 100_000),
    growth_n=60,
)
