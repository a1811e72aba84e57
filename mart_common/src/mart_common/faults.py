"""Fault-injection points for the fault suite (docs/reliability.md), OFF unless the environment sets them.

A :class:`CrashPoint` reads ``<variable>=<n>`` (a positive integer) once, when it is made; the n-th time the
code passes it, the process writes one line ``fault_injected <label> <details>`` to stderr and exits at once
with ``os._exit`` (no cleanup, no flush of anything else: like ``kill -9``). Unset, empty, 0 or not an
integer: it never fires and costs one comparison.
"""

from __future__ import annotations

import os
import sys

CONSUMER_CRASH_AFTER_COMMIT = "MART_FAULT_CONSUMER_CRASH_AFTER_COMMIT"
"""The inbox subscriber exits after the n-th event whose handler's transaction committed, BEFORE the bus
commits the record's offset (exit code 87): on restart the record is delivered again and the inbox must
absorb it (``duplicate_event_ignored``)."""


class CrashPoint:
    """A place where the process may be made to crash, once, for a test."""

    def __init__(self, variable: str, label: str, exit_code: int) -> None:
        self.label = label
        self.exit_code = exit_code
        try:
            self._remaining = max(0, int(os.environ.get(variable) or 0))
        except ValueError:
            self._remaining = 0

    def passed(self, **details: object) -> None:
        """Count one pass; on the n-th, crash (``details`` go into the stderr line)."""
        if self._remaining <= 0:
            return
        self._remaining -= 1
        if self._remaining == 0:
            said = " ".join(f"{k}={v}" for k, v in details.items())
            sys.stderr.write(f"fault_injected {self.label} {said}\n")
            sys.stderr.flush()
            os._exit(self.exit_code)
