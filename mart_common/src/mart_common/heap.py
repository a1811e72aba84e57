"""The garbage collector in a long-running service process (docs/adr/0047-startup-heap-frozen.md).

A service's heap after startup is ~120,000 objects the collector tracks (the modules of FastAPI, SQLAlchemy,
pydantic, protobuf, the app, its routes and tables) that live as long as the process. CPython's full
collection walks all of them: about 60 ms of CPU on the bench machine, 90–340 ms on the clock under load,
during which the event loop stands still, about once every 10–20 s per service at half the saturation rate.
Freezing them once the service has started moves them to the collector's permanent generation: later
collections, full ones included, look only at what was allocated since.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> bool:
    """Collect the startup garbage, then freeze what is left; once per process (later calls do nothing:
    a process hosting several apps one after another, such as a test run, freezes only the first).
    Returns whether this call froze."""
    global _frozen
    if _frozen:
        return False
    _frozen = True
    gc.collect()
    gc.freeze()
    return True
