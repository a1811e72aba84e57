"""Where the CPU goes: py-spy (sampling, attached to running services) and, when installed, perf (on-CPU
samples by binary). The collapsed stacks (``profile-*.collapsed.txt``) are written next to the results for
flame graphs and not committed; the text summaries (``profile-checkout.txt``, ``profile-catalog.txt``) are.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy_cmd() -> list[str] | None:
    exe = shutil.which("py-spy")
    if exe:
        return [exe]
    uvx = shutil.which("uvx")
    if uvx:
        r = subprocess.run([uvx, "--from", "py-spy", "py-spy", "--version"], capture_output=True, timeout=180)
        if r.returncode == 0:
            return [uvx, "--from", "py-spy", "py-spy"]
    return None


def py_spy_record(cmd: list[str], pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` for ``seconds`` at 100 Hz, GIL-holding samples only (by wall clock), raw
    collapsed stacks to ``raw``; without pausing the process."""
    return subprocess.Popen(
        [*cmd, "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw", "--gil"]
        + ["-o", str(raw), "--nonblocking"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def perf_record(pids: dict[int, str], seconds: int, data: Path) -> subprocess.Popen[bytes] | None:
    """``perf record`` of ``pids`` (on-CPU samples only, 499 Hz, no call graphs) when perf is installed.

    py-spy's ``--gil`` samples the thread holding the GIL by wall clock, also while it is runnable but off
    the CPU; on a saturated machine a thread that wakes another process (every socket ``write`` to
    PostgreSQL or Kafka) is often preempted right there, so py-spy charges that wait to the write's caller
    (asyncpg, aiokafka). The kernel's samples count only time on a CPU: which binary the cycles ran in.
    """
    exe = shutil.which("perf")
    if exe is None:
        return None
    data.unlink(missing_ok=True)
    return subprocess.Popen(
        [exe, "record", "-q", "-e", "cpu-clock", "-F", "499", "-p", ",".join(map(str, pids)), "-o", str(data)]
        + ["--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _binary_group(dso: str) -> str:
    name = dso.rsplit("/", 1)[-1]
    if name.startswith("libpython"):
        return "Python interpreter (all Python code)"
    if dso == "[kernel.kallsyms]":
        return "kernel (sockets, epoll, scheduling)"
    if "/site-packages/" in dso:
        return dso.split("/site-packages/", 1)[1].split("/", 1)[0] + " (compiled)"
    if name.startswith("libc.") or name.startswith("libc-"):
        return "libc"
    return name.split(".cpython", 1)[0]


def perf_split(proc: subprocess.Popen[bytes] | None, data: Path, pids: dict[int, str]) -> dict[str, Any]:
    """Share of each service's on-CPU samples per binary (``perf report --sort pid,dso``); the data file is
    removed afterwards (it is large and holds addresses only)."""
    if proc is None:
        return {"text": ["(perf not installed: no on-CPU split by binary)", ""]}
    try:
        proc.wait(timeout=120)
        out = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--sort", "pid,dso", "-v", "-g", "none"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"text": [f"(perf failed: {exc})", ""]}
    finally:
        data.unlink(missing_ok=True)
    shares: dict[str, Counter[str]] = {svc: Counter() for svc in pids.values()}
    for line in out.splitlines():
        # "  73.10%  30435:python  /path/to/binary"
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        pid_text = parts[1].partition(":")[0]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid in pids:
            shares[pids[pid]][_binary_group(parts[-1])] += float(parts[0].rstrip("%"))
    by_service = {}
    text = ["on-CPU samples by binary (perf, kernel-counted CPU time; py-spy above samples by wall clock):"]
    for svc, c in shares.items():
        total = sum(c.values()) or 1.0
        top = [(grp, round(100 * v / total, 1)) for grp, v in c.most_common(6)]
        by_service[svc] = top
        text.append(f"  {svc:22s} " + ", ".join(f"{grp} {share}%" for grp, share in top))
    return {"by_service": by_service, "text": [*text, ""]}


def packages_together(
    summaries: dict[str, dict[str, Any]], weights: dict[str, float]
) -> list[tuple[str, float]]:
    """Self time by package over several services, each weighted by its CPU per order."""
    total = sum(weights.values()) or 1.0
    mixed: Counter[str] = Counter()
    for svc, summ in summaries.items():
        for pkg, share in summ["by_package"]:
            mixed[pkg] += share * weights.get(svc, 0.0) / total
    return [(pkg, round(share, 1)) for pkg, share in mixed.most_common(15)]


def _frame_name(frame: str) -> str:
    # py-spy raw: "function (path/to/file.py:123)" -> "function (pkg/file.py)"
    fn, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path = loc.rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "src" in parts:
        parts = parts[parts.index("src") + 1 :]
    elif path.startswith("/"):
        parts = parts[-2:]
    # else: already relative to its package root ("sqlalchemy/orm/session.py")
    return f"{fn} ({'/'.join(parts)})"


def summarize_profile(raw: Path, svc: str, during: str) -> dict[str, Any]:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        cnt = int(n)
        frames = [
            _frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += cnt
        self_c[frames[-1]] += cnt
        for f in set(frames):
            incl[f] += cnt
    # group the self time by library
    lib: Counter[str] = Counter()
    for f, c in self_c.items():
        mod = f.rsplit("(", 1)[-1].split("/")[0].rstrip(")")
        lib[mod] += c
    lines = [
        f"py-spy --gil profile of {svc} during {during}; {total} samples at 100 Hz, taken only while the "
        "process held the GIL (by wall clock: also while runnable but off the CPU; see the on-CPU split)",
        "",
        "self time by top-level package:",
    ]
    lines += [f"  {100 * c / total:5.1f}%  {m}" for m, c in lib.most_common(15)]
    lines += ["", "self time (leaf frames):"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_c.most_common(25)]
    lines += ["", "inclusive time (frame anywhere on the stack):"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(40)]
    return {
        "text": "\n".join(lines) + "\n",
        "samples": total,
        "top_self": [(f, round(100 * c / total, 1)) for f, c in self_c.most_common(25)],
        "top_inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(40)],
        "by_package": [(m, round(100 * c / total, 1)) for m, c in lib.most_common(15)],
    }
