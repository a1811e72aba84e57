"""Progress lines of a bench run, stamped with the seconds since it started."""

from __future__ import annotations

import time

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def elapsed_s() -> float:
    return time.monotonic() - T0
