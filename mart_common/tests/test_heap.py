"""A started service leaves its startup heap out of the garbage collector's walks (mart_common.heap,
docs/adr/0047-startup-heap-frozen.md), collects its young generation less often
(docs/adr/0059-young-collections-spaced.md), and still collects what it allocates afterwards.

Each case runs in a fresh interpreter: freezing is once per process, and this one hosts the whole suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_SERVICE = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    from pathlib import Path
    import httpx
    from mart_cli.services import SERVICES
    from mart_common.heap import freeze_startup_heap

    d = Path(sys.argv[1])
    svc = next(s for s in SERVICES if s.short == "product")
    settings = svc.settings(
        data_dir=d, event_bus="inprocess", inprocess_bus_url=f"sqlite+aiosqlite:///{d / 'bus.sqlite'}",
        database_url=f"sqlite+aiosqlite:///{d / 'product.sqlite'}", log_level="WARNING",
    )
    app = svc.main_module().create_app(settings)

    class Node:
        pass

    async def main():
        out = {"frozen_before": gc.get_freeze_count(), "young_before": gc.get_threshold()[0]}
        async with app.router.lifespan_context(app):
            out["frozen"] = gc.get_freeze_count()
            out["young"] = gc.get_threshold()[0]
            out["tracked"] = len(gc.get_objects())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                out["health"] = (await c.get("/health")).status_code
            a, b = Node(), Node()
            a.other, b.other = b, a  # a cycle allocated after startup: the collector still frees it
            del a, b
            out["collected"] = gc.collect()
            out["again"] = freeze_startup_heap()
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def test_a_started_service_freezes_its_startup_heap_once_spaces_young_collections_and_still_collects_garbage(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["frozen_before"] == 0
    # the modules, the app, its routes and tables: tens of thousands of long-lived objects, now frozen ...
    assert out["frozen"] > 20_000
    # ... so a collection walks only what was allocated since startup
    assert out["tracked"] < out["frozen"] // 10
    # and the young generation is collected every 10,000 allocations, not the interpreter's default
    assert out["young"] == 10_000 > out["young_before"]
    assert out["health"] == 200
    assert out["collected"] >= 2
    assert out["again"] is False  # once per process
