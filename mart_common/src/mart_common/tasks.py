"""Stopping background tasks without cutting a database transaction in half."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def stop_gracefully(tasks: Iterable[asyncio.Task[None]], grace_s: float = 10.0) -> None:
    """Give ``tasks`` ``grace_s`` seconds to finish the work in hand (their loops were told to stop),
    then cancel what is left (``grace_s=0``: at once, for tasks that only wait, with no work in hand).

    Cancelling a task in the middle of a database round trip can leave an asyncpg connection that never
    closes; letting the record or batch in hand finish avoids that, and the bound keeps shutdown finite.
    """
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    if pending:
        still_running = set(pending)
        if grace_s > 0:
            _, still_running = await asyncio.wait(pending, timeout=grace_s)
        for task in still_running:
            task.cancel()
        for task in still_running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
