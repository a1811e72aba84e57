"""Kafka namespaces of test runs and bench runs, and their removal when the run is done.

Tests and benches share the developer's broker (the one ``mart dist up`` uses too) and isolate themselves
by a topic and group prefix (``MART_KAFKA_NAMESPACE``; docs/adr/0009-kafka-namespaces-in-tests.md). A
full test run creates about 7,700 partitions that way; left behind, the broker carried every earlier run's:
its old generation grew to ~400 MB, a G1 marking cycle followed each young collection, and its periodic
checkpoints walked them all, stealing the CPU from what was measured. So whoever makes a namespace deletes
its topics when done (the groups' offsets go with them).
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings

from aiokafka.admin import AIOKafkaAdminClient
from mart_common.polling import wait_until

KAFKA_BOOTSTRAP = os.environ.get("MART_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def new_namespace(kind: str = "t") -> str:
    """A fresh prefix for topics and groups (``<kind><hex>.``)."""
    return f"{kind}{uuid.uuid4().hex[:10]}."


async def delete_namespace(namespace: str, bootstrap: str = KAFKA_BOOTSTRAP, *, timeout_s: float = 30) -> int:
    """Delete every topic of ``namespace`` and wait until the broker no longer lists them; returns how many.

    The controller answers once the deletion is committed; the broker's metadata (what ``list_topics``
    reads) catches up a moment later, so the call waits for that too. Best effort: a broker that is gone,
    slow or refusing leaves them (with a warning) rather than failing the run that is cleaning up."""
    if not namespace.endswith(".") or len(namespace) < 3:
        raise ValueError(f"not a namespace: {namespace!r}")  # never a prefix of everyone's topics
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            topics = [t for t in await admin.list_topics() if t.startswith(namespace)]
            if topics:
                response = await admin.delete_topics(topics)
                refused = {t: code for t, code in response.topic_error_codes if code}
                if refused:
                    raise RuntimeError(f"the controller refused to delete {refused}")
                await wait_until(
                    admin.list_topics,
                    until=lambda listed: not any(t.startswith(namespace) for t in listed),
                    timeout=None,  # bounded by the timeout around it all
                    interval=0.05,
                    what=f"the broker to stop listing {namespace}*",
                )
            return len(topics)
    except Exception as exc:  # noqa: BLE001 - cleanup: report, do not fail the run
        warnings.warn(f"Kafka namespace {namespace!r} not deleted: {exc!r}", stacklevel=2)
        return 0
    finally:
        await admin.close()


def delete_namespace_sync(namespace: str, bootstrap: str = KAFKA_BOOTSTRAP) -> int:
    """:func:`delete_namespace` from code outside an event loop (fixture teardowns, the bench)."""
    return asyncio.run(delete_namespace(namespace, bootstrap))
