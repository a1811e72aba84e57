"""CPU and memory of the processes a phase measures, and of the whole machine, over one window."""

from __future__ import annotations

import threading
import time

import psutil

from bench import probes
from bench.results import Processes


class Sampler:
    """CPU seconds and RSS of the given processes (and of the whole machine) over a ``with`` block; RSS is
    sampled every 0.5 s (peak kept)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {n: psutil.Process(p) for n, p in pids.items()}
        self.peak_rss: dict[str, int] = {n: 0 for n in pids}
        self.cpu_cores: dict[str, float] = {}
        self.infra_cores: dict[str, float] = {}
        self.machine_busy_cores = 0.0
        self.wall = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self.cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in self.procs.items()}
        self.sys0 = psutil.cpu_times()
        self.g0 = probes.cpu_groups()
        self.t0 = time.perf_counter()
        self._thr = threading.Thread(target=self._loop, daemon=True)
        self._thr.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            for n, p in self.procs.items():
                try:
                    self.peak_rss[n] = max(self.peak_rss[n], p.memory_info().rss)
                except psutil.Error:
                    pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thr.join()
        wall = time.perf_counter() - self.t0
        self.wall = wall
        for n, p in self.procs.items():
            try:
                self.cpu_cores[n] = (sum(p.cpu_times()[:2]) - self.cpu0[n]) / wall
                self.peak_rss[n] = max(self.peak_rss[n], p.memory_info().rss)
            except psutil.Error:
                pass
        g1 = probes.cpu_groups()
        self.infra_cores = {k: max(0.0, (g1[k] - self.g0[k]) / wall) for k in g1}
        self.machine_busy_cores = (probes.busy_s(psutil.cpu_times()) - probes.busy_s(self.sys0)) / wall

    def processes(self, generator_cores: float = 0.0) -> Processes:
        """What was sampled; ``unrelated``: the machine's busy cores minus everything measured."""
        unrelated = (
            self.machine_busy_cores
            - sum(self.cpu_cores.values())
            - sum(self.infra_cores.values())
            - generator_cores
        )
        return Processes(
            service_cpu_cores=dict(self.cpu_cores),
            peak_rss_mb={n: v / 2**20 for n, v in self.peak_rss.items()},
            infra_cpu_cores=dict(self.infra_cores),
            machine_busy_cores=self.machine_busy_cores,
            wall_s=self.wall,
            unrelated_cpu_cores=max(0.0, unrelated),
        )


def rss_mb(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for n, p in pids.items():
        try:
            out[n] = psutil.Process(p).memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out
