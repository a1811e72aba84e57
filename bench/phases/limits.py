"""The machine's own limits, measured before the mart runs: a bare uvicorn + FastAPI endpoint (ours and an
older framework generation), one HTTP round trip, pgbench, one commit, one lean saga step, one Kafka hop."""

from __future__ import annotations

from bench import probes
from bench.console import say
from bench.phases import Context
from bench.results import KafkaProbe, Latency, Limits, Pgbench, Probe, Throughput


def _hello(ctx: Context, *, old_framework: bool = False) -> tuple[Throughput, Probe | None]:
    b = ctx.budget
    proc, port = probes.start_hello(["--no-access-log"], old_framework=old_framework)
    try:
        url = f"http://127.0.0.1:{port}/hello"
        hello = ctx.wrk(url, path="GET /hello", server_pids=[proc.pid])
        if old_framework:
            return hello, None
        seq = probes.loadgen({"mode": "seq", "url": url, "n": b.seq_n})
        hop = Probe(
            latency=Latency.of(probes.lat_summary(seq["latencies_s"])),
            errors=sum(seq["errors"].values()),
            gen_cpu_cores=seq["gen_cpu_cores"],
        )
        return hello, hop
    finally:
        proc.terminate()
        proc.wait(10)


def machine_limits(ctx: Context) -> Limits:
    from mart_cli import dist

    b = ctx.budget
    say("machine limits: PostgreSQL + Kafka up (scripts/infra)")
    dist.infra_up(dist.DistConfig(data_dir=probes.DATA), say=lambda m: None)
    say("bare endpoint: uvicorn + FastAPI GET /hello, same uvicorn options as the services")
    hello, hop = _hello(ctx)
    assert hop is not None
    say(f"  hello {hello.rps or 0:.0f} req/s, one round trip p50 {hop.p50_ms or 0:.2f} ms")
    old: Throughput | None = None
    try:
        old, _ = _hello(ctx, old_framework=True)
    except Exception as exc:  # noqa: BLE001 - informative only (needs PyPI once, then uv's cache)
        say(f"  hello on {', '.join(probes.OLD_FRAMEWORK)} not measured: {exc}")
    else:
        old.versions = tuple(probes.OLD_FRAMEWORK)
        say(f"  hello on the FastAPI 0.111 generation: {old.rps or 0:.0f} req/s")
    say("pgbench (TPC-B-like) on the same PostgreSQL")
    pgbench = Pgbench.of(
        probes.pgbench(scale=b.pgbench_scale, clients=b.pgbench_clients, duration_s=b.pgbench_s)
    )
    commit = Probe.of(probes.pg_commit(b.commit_n))
    step = Probe.of(probes.pg_step(b.commit_n))
    say(
        f"  pgbench {pgbench.tps or 0:.0f} tps; one INSERT+COMMIT p50 {commit.p50_ms or 0:.2f} ms; "
        f"one saga step's transaction (driver alone) p50 {step.p50_ms or 0:.2f} ms"
    )
    layers = {layer: Probe.of(d) for layer, d in probes.pg_step_layers(b.commit_n).items()}
    say(
        "  the same step on each database layer, CPU per step: "
        + ", ".join(f"{layer} {probe.cpu_ms or 0:.2f} ms" for layer, probe in layers.items())
    )
    kafka = KafkaProbe.of(probes.kafka_roundtrip(b.kafka_n, b.kafka_burst))
    say(
        f"  kafka produce->consume p50 {kafka.p50_ms or 0:.2f} ms, "
        f"burst {kafka.burst_msgs_per_s or 0:.0f} msg/s"
    )
    return Limits(
        hello=hello,
        http_hop=hop,
        pgbench=pgbench,
        pg_commit=commit,
        pg_step=step,
        kafka=kafka,
        hello_old_framework=old,
        pg_step_layers=layers,
    )
