"""One bounded benchmark run: ``./mart bench [--quick]`` (or ``python -m bench.run``).

Measures, on this machine and in this one run: the machine's limits (a bare uvicorn+FastAPI endpoint,
pgbench on the same PostgreSQL, a raw Kafka round trip), catalog reads, checkout throughput and latency in
the local distributed mode and in the embedded mode, service memory, profiles of the four services every
order goes through; prints a table with the ratios and writes ``bench/results/latest.json``, ``latest.png``
and the profiles. See ``docs/performance.md``.

The phases are in ``bench/phases/``, their typed results in ``bench/results.py``, the ratios, table, chart
and files in ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import probes, report
from bench.budget import FULL, QUICK, Budget
from bench.console import elapsed_s, say
from bench.phases import Context
from bench.results import BenchRun

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None, prog: str = "bench.run") -> int:
    args = _parse_args(argv, prog)
    renicer = None
    if args.nice:
        # inherited by everything the bench starts (services, hello server, wrk, load generator);
        # PostgreSQL and Kafka keep their own priority
        os.nice(args.nice)
        renicer = probes.PgRenicer(os.nice(0))
        renicer.start()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    budget = QUICK if args.quick else FULL
    password = os.environ.get("MART_BENCH_ADMIN_PASSWORD") or secrets.token_urlsafe(16)
    run = BenchRun(meta=_meta(args, budget))
    probes.ensure_wrk()
    _run_phases(run, Context(budget, out, password), args.skip)
    if renicer is not None:
        renicer.stop()
        run.meta["pg_backends_reniced"] = len(renicer.reniced)
    run.ratios = report.ratios(run)
    run.meta["wall_s"] = elapsed_s()
    run.meta["loadavg_at_end"] = os.getloadavg()
    text = report.write(run, out)
    print()
    print(text)
    profiles = run.distributed.profile.files if run.distributed and run.distributed.profile else []
    print(
        f"\nwall time {run.meta['wall_s']:.0f}s; results in {out}/latest.json, latest.png, latest.txt"
        + (f", {', '.join(profiles)}" if profiles else "")
    )
    if run.failures:
        print(f"FAILED parts: {', '.join(run.failures)} (details in latest.json 'failures')", file=sys.stderr)
        return 1
    return 0


def _parse_args(argv: list[str] | None, prog: str = "bench.run") -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a ~3 minute smoke run (shorter phases)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["limits", "dist", "embedded", "replicas", "growth"],
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


def _meta(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """What the run was asked to do, and the machine it ran on."""
    import dataclasses
    import time

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nice": args.nice,
        "quick": args.quick,
        "budget": dataclasses.asdict(budget),
        "machine": {
            "cpus": psutil.cpu_count(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
    }


def _run_phases(run: BenchRun, ctx: Context, skip: list[str]) -> None:
    """Each phase not skipped, in order; a failed phase is recorded in ``run.failures``, the others run."""
    from bench.phases.distributed import distributed
    from bench.phases.embedded import embedded
    from bench.phases.growth import growth
    from bench.phases.limits import machine_limits
    from bench.phases.replicas import replicas

    phases: tuple[tuple[str, str, Callable[[Context], Any]], ...] = (
        ("limits", "limits", machine_limits),
        ("distributed", "dist", distributed),
        ("embedded", "embedded", embedded),
        ("replicas", "replicas", replicas),
        ("growth", "growth", growth),
    )
    for name, option, phase in phases:
        if option in skip:
            continue
        try:
            setattr(run, name, phase(ctx))
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported, the others still run
            say(f"{name} FAILED: {exc!r}")
            run.failures[name] = "".join(traceback.format_exception(exc))[-3000:]
    if run.distributed is not None and run.distributed.lean_saga_error:
        run.failures["lean_saga"] = run.distributed.lean_saga_error


if __name__ == "__main__":
    sys.exit(main())
