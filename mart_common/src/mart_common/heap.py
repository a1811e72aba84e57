"""The garbage collector in a long-running service process (docs/adr/0047-startup-heap-frozen.md).

A service's heap after startup is ~120,000 objects the collector tracks (the modules of FastAPI, SQLAlchemy,
pydantic, protobuf, the app, its routes and tables) that live as long as the process. CPython's full
collection walks all of them: about 60 ms of CPU on the bench machine, 90–340 ms on the clock under load,
during which the event loop stands still, about once every 10–20 s per service at half the saturation rate.
Freezing them once the service has started moves them to the collector's permanent generation: later
collections, full ones included, look only at what was allocated since.

Under load the services allocate steadily (the Kafka client's records, the event loop's handles, the ORM's
states, the requests): with CPython's default young generation (700 allocations) a saga service ran a young
collection about once per order, a middle one every ten of those and a full one (everything alive since
startup) every hundred.
The young generation is collected every :data:`YOUNG_GENERATION` allocations instead
(docs/adr/0059-young-collections-spaced.md).
"""

from __future__ import annotations

import gc

_frozen = False

YOUNG_GENERATION = 10_000
"""Net allocations of tracked objects between two young collections (CPython's default: 700); the older
generations keep their default ratios, so they too run about 14 times less often."""


def freeze_startup_heap() -> bool:
    """Collect the startup garbage, then freeze what is left and space the young collections; once per
    process (later calls do nothing: a process hosting several apps one after another, such as a test run,
    freezes only the first). Returns whether this call froze."""
    global _frozen
    if _frozen:
        return False
    _frozen = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
    return True
