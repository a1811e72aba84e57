"""The phases of a bench run, in the order ``bench.run`` runs them: the machine's limits
(:mod:`.limits`), the local distributed mode (:mod:`.distributed`: catalog reads, checkout saturation, the
profiled run, the latency run and the lean saga), the embedded mode (:mod:`.embedded`) and the replicas
(:mod:`.replicas`). :mod:`.checkout` drives the load generator for all of them. Each phase returns its typed
results (``bench.results``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.budget import Budget


@dataclass(frozen=True)
class Context:
    """What every phase gets: its budget, where files go, the admin password of the stacks it starts."""

    budget: Budget
    out: Path
    admin_password: str
