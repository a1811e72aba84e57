"""The typed results of a bench run: what each phase measured, what the report computes from it, and how
it is written to ``latest.json``.

The probes (``bench/probes.py``) and the load generator (``bench/loadgen.py``, a separate process) answer
with plain JSON-able dicts; each is turned into one of these types where a phase receives it, so the ratios
and the table read named fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Latency:
    """Percentiles of a list of latencies (``probes.lat_summary``)."""

    n: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Latency:
        return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class Throughput:
    """One ``wrk`` run against one URL, with the CPU of everything around it."""

    path: str
    rps: float | None
    requests: int | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    errors: int
    gen_cpu_cores: float
    server_cpu_cores: float | None
    machine_busy_cores: float
    postgres_cpu_cores: float
    unrelated_cpu_cores: float
    duration_s: float
    cmd: str = ""
    versions: tuple[str, ...] = ()

    @classmethod
    def of(cls, d: Mapping[str, Any], *, path: str, duration_s: float) -> Throughput:
        return cls(
            path=path,
            duration_s=duration_s,
            **{
                f.name: d.get(f.name)
                for f in dataclasses.fields(cls)
                if f.name not in ("path", "duration_s", "versions") and f.name in d
            },
        )

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """The server's CPU per request: its cores × the run's length ÷ the requests served."""
        if not self.requests or self.server_cpu_cores is None:
            return None
        return self.server_cpu_cores * self.duration_s * 1000 / self.requests


@dataclass
class Probe:
    """Sequential round trips timed one after the other (back to back), and ``sparse``: the same timed
    with a gap before each (the processes asleep); ``cpu_ms``: the probe's own CPU per call."""

    latency: Latency
    cpu_ms: float | None = None
    sparse: Probe | None = None
    gap_ms: float | None = None
    errors: int = 0
    gen_cpu_cores: float | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Probe:
        sparse = d.get("sparse")
        return cls(
            latency=Latency.of(d),
            cpu_ms=d.get("cpu_ms"),
            sparse=cls.of(sparse) if sparse else None,
            gap_ms=d.get("gap_ms"),
        )

    @property
    def p50_ms(self) -> float | None:
        return self.latency.p50_ms


@dataclass
class KafkaProbe(Probe):
    """The Kafka round trip, and a pipelined burst through one partition."""

    burst_msgs: int | None = None
    burst_msgs_per_s: float | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> KafkaProbe:
        base = Probe.of(d)
        return cls(**vars(base), burst_msgs=d.get("burst_msgs"), burst_msgs_per_s=d.get("burst_msgs_per_s"))


@dataclass
class Pgbench:
    scale: int
    clients: int
    duration_s: int
    tps: float | None
    latency_avg_ms: float | None
    failed: int

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Pgbench:
        return cls(
            d["scale"], d["clients"], d["duration_s"], d.get("tps"), d.get("latency_avg_ms"), d["failed"]
        )


@dataclass
class Limits:
    """The machine's own limits, measured before the mart runs."""

    hello: Throughput
    http_hop: Probe
    pgbench: Pgbench
    pg_commit: Probe
    pg_step: Probe
    kafka: KafkaProbe
    hello_old_framework: Throughput | None = None
    #: the step's work on each database layer (probes.pg_step_layers): asyncpg, core, session, orm
    pg_step_layers: dict[str, Probe] = field(default_factory=dict)


@dataclass
class Processes:
    """The CPU and memory of the processes measured over one window (``bench.sampling.Sampler``)."""

    service_cpu_cores: dict[str, float]
    peak_rss_mb: dict[str, float]
    infra_cpu_cores: dict[str, float]
    machine_busy_cores: float
    wall_s: float
    unrelated_cpu_cores: float = 0.0


@dataclass
class DbCounters:
    """``pg_stat_database`` over a window (``probes.pg_delta``), with the orders placed meanwhile."""

    xact_commit: int
    per_db: dict[str, int]
    cluster_write_xacts: int
    rollbacks: int
    seconds: float
    orders: int = 0

    @classmethod
    def of(cls, d: Mapping[str, Any], orders: int) -> DbCounters:
        return cls(
            d["xact_commit"], d["per_db"], d["cluster_write_xacts"], d["rollbacks"], d["seconds"], orders
        )

    @property
    def xact_commit_per_order(self) -> float | None:
        return self.xact_commit / self.orders if self.orders else None


@dataclass
class CheckoutRun:
    """One checkout run of the load generator: a closed loop of customers or an open loop at a rate."""

    loop: str
    concurrency: int | None
    rate: float | None
    observe: str
    poll_s: float | None
    orders_per_s: float
    completed: int
    completed_in_window: int
    window_s: float
    wall_s: float
    errors: dict[str, int]
    warmup_completed: int
    warmup_errors: dict[str, int]
    requests: dict[str, int]
    gen_cpu_cores: float
    gen_cpu_s: float
    latency: Latency
    processes: Processes
    latencies_s: list[float] = field(default_factory=list, repr=False)
    db: DbCounters | None = None
    #: CPU summed over the replicas of each service (the replica runs)
    service_cpu_cores_by_service: dict[str, float] = field(default_factory=dict)
    #: p50 (ms) of each gap between the saga's consecutive events (``probes.saga_hops``; the latency runs)
    hops: dict[str, float] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def service_cpu_ms_per_order(self) -> float | None:
        """The services' CPU per order PAID during this run (ms)."""
        cores = self.processes.service_cpu_cores
        return sum(cores.values()) * 1000 / self.orders_per_s if self.orders_per_s and cores else None


@dataclass
class Saturation:
    """Closed-loop runs with more and more customers; the best is the saturation point."""

    runs: list[CheckoutRun]

    @property
    def best(self) -> CheckoutRun:
        return max(self.runs, key=lambda r: r.orders_per_s)


@dataclass
class Idle:
    rss_mb: dict[str, float]
    cpu_cores: dict[str, float] = field(default_factory=dict)
    machine_busy_cores: float | None = None
    xact_commit_per_s: float = 0.0
    per_db: dict[str, int] = field(default_factory=dict)


@dataclass
class Profile:
    """Where the CPU went during a separate, profiled run (``bench.profiling``)."""

    files: list[str]
    summary: dict[str, Any]
    error: str | None = None


@dataclass
class Catalog:
    lean: Throughput
    list: Throughput
    list_db: Throughput
    item: Throughput
    health: Throughput
    # one product by id: the lean floor's route (bench/lean.py) and ours with Cache-Control: no-cache
    lean_item: Throughput | None = None
    item_db: Throughput | None = None
    profile: Profile | None = None


@dataclass
class Distributed:
    up_s: float
    setup_s: float = 0.0
    idle: Idle | None = None
    catalog: Catalog | None = None
    # the web front's pages (home, catalog, product), one web-service process (bench/phases/web.py)
    web: dict[str, Throughput] = field(default_factory=dict)
    saturation: Saturation | None = None
    profile: Profile | None = None
    latency: CheckoutRun | None = None
    lean_saga: CheckoutRun | None = None
    lean_saga_error: str | None = None
    #: the lean saga again on the services' database layers (bench/leansaga.py: "core", "session")
    lean_saga_layers: dict[str, CheckoutRun] = field(default_factory=dict)
    #: the lean saga's closed-loop runs (on the driver): the machine's floor for the checkout's saturation
    lean_saga_saturation: Saturation | None = None
    pids: dict[str, int] = field(default_factory=dict)


@dataclass
class Embedded:
    up_s: float
    setup_s: float = 0.0
    idle: Idle | None = None
    saturation: Saturation | None = None
    latency: CheckoutRun | None = None


@dataclass
class Replicas:
    scaled: list[str]
    up_s: float = 0.0
    runs: dict[int, CheckoutRun] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        one, two = self.runs.get(1), self.runs.get(2)
        return two.orders_per_s / one.orders_per_s if one and two and one.orders_per_s else None


@dataclass
class GrowthPoint:
    """One request's p50 (ms) at each size of its table, on one database (bench/phases/growth.py)."""

    database: str
    request: str
    p50_ms: dict[int, float]
    other_cpu_cores: float = 0.0

    @property
    def growth(self) -> float | None:
        """p50 at the largest size ÷ p50 at the smallest."""
        sizes = sorted(self.p50_ms)
        first = self.p50_ms[sizes[0]] if sizes else 0
        return self.p50_ms[sizes[-1]] / first if first else None


@dataclass
class Growth:
    points: list[GrowthPoint] = field(default_factory=list)


@dataclass
class Ratios:
    """What the report computes from the figures (docs/performance.md, "The ratios")."""

    catalog_over_bare: dict[str, float] = field(default_factory=dict)
    catalog_over_lean: dict[str, float] = field(default_factory=dict)
    # page views/s of the web front ÷ the catalog API's list req/s
    web_over_catalog_api: dict[str, float] = field(default_factory=dict)
    db_xacts_per_order_gross: float | None = None
    db_xacts_per_order: float | None = None
    db_rollbacks_per_order: float | None = None
    service_cpu_ms_per_order: float | None = None
    db_bound_orders_per_s: float | None = None
    checkout_over_db_bound: float | None = None
    #: orders PAID/s at saturation: ours ÷ the lean saga's (both distributed, the same closed loop)
    checkout_saturation_over_lean_saga: float | None = None
    embedded_cpu_ms_per_order: float | None = None
    latency_service_cpu_ms_per_order: float | None = None
    hops: dict[str, int] = field(default_factory=dict)
    minimal_checkout_ms: float | None = None
    checkout_p50_over_minimal: float | None = None
    lean_steps_checkout_ms: float | None = None
    checkout_p50_over_lean_steps: float | None = None
    lean_steps_apart_checkout_ms: float | None = None
    checkout_p50_over_lean_steps_apart: float | None = None
    lean_steps_apart_over_minimal: float | None = None
    lean_saga_p50_over_minimal: float | None = None
    lean_saga_p99_over_minimal: float | None = None
    checkout_p50_over_lean_saga: float | None = None
    checkout_p99_over_lean_saga: float | None = None
    lean_saga_cpu_ms_per_order: float | None = None
    #: ours at the latency run's rate ÷ the lean saga: all six services' CPU per order (ours also sends the
    #: notifications, commits the stock and marks the outbox, which the lean saga leaves out), and the three
    #: services of the saga's path alone (order, inventory, payment)
    checkout_cpu_over_lean_saga: float | None = None
    path_cpu_ms_per_order: float | None = None
    path_cpu_over_lean_saga: float | None = None
    #: the lean saga on the services' database layers: CPU per order, and ÷ the lean saga on the driver
    lean_saga_layer_cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    lean_saga_layer_cpu_over_driver: dict[str, float] = field(default_factory=dict)


@dataclass
class BenchRun:
    """Everything one run measured and computed: what ``latest.json`` holds."""

    meta: dict[str, Any]
    limits: Limits | None = None
    distributed: Distributed | None = None
    embedded: Embedded | None = None
    replicas: Replicas | None = None
    growth: Growth | None = None
    ratios: Ratios = field(default_factory=Ratios)
    failures: dict[str, str] = field(default_factory=dict)
    table: list[str] = field(default_factory=list)


#: Bulky per-request lists: summarised in the JSON (the latency CDF is in the PNG).
_NOT_IN_JSON = {"latencies_s"}
#: Figures computed from the fields, written next to them (``best``: the customers of the best run).
_COMPUTED = (
    "best",
    "speedup",
    "growth",
    "server_cpu_ms_per_request",
    "service_cpu_ms_per_order",
    "error_count",
)


def to_json(value: Any) -> Any:
    """A result as JSON-able data (dataclasses as objects, with their computed figures)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value) if f.name not in _NOT_IN_JSON]
        out = {name: to_json(getattr(value, name)) for name in names}
        for name in _COMPUTED:
            if isinstance(getattr(type(value), name, None), property):
                computed = getattr(value, name)
                out[name] = computed.concurrency if name == "best" else to_json(computed)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value
