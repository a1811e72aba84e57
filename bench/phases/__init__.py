"""The phases of a bench run, in the order ``bench.run`` runs them: the machine's limits
(:mod:`.limits`), the local distributed mode (:mod:`.distributed`: catalog reads, checkout saturation, the
profiled run, the latency run and the lean saga), the embedded mode (:mod:`.embedded`) and the replicas
(:mod:`.replicas`). :mod:`.checkout` drives the load generator for all of them. Each phase returns its typed
results (``bench.results``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import probes
from bench.budget import Budget
from bench.results import Throughput


@dataclass(frozen=True)
class Context:
    """What every phase gets: its budget, where files go, the admin password of the stacks it starts."""

    budget: Budget
    out: Path
    admin_password: str

    def wrk(
        self,
        url: str,
        *,
        path: str,
        server_pids: list[int] | None,
        headers: dict[str, str] | None = None,
    ) -> Throughput:
        """One ``wrk`` run of the budget's connections and length against ``url``, with the CPU of
        ``server_pids``; ``path``: how the report names it."""
        b = self.budget
        run = probes.wrk(
            url, connections=b.wrk_conns, duration_s=b.wrk_s, headers=headers, server_pids=server_pids
        )
        return Throughput.of(run, path=path, duration_s=b.wrk_s)
