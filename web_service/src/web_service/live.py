"""Live order status: which open order pages to wake when their order's events pass on the bus
(eShop's ``OrderStatusNotificationService``, on our bus).

One group-less reader per web process follows ``mart.orders.v1`` and ``mart.payments.v1`` from their end
(no consumer group: every replica sees every event, and looking changes no group's position). An order page
registers its order id; an event for that order wakes it, and the page reads the order again through the
order and payment APIs — the events only say *when* to look, the APIs say *what* the user may see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import structlog
from mart_common.bus import EventBus
from mart_common.bus.browse import decode_event

log = structlog.get_logger(__name__)

TOPICS = ("mart.orders.v1", "mart.payments.v1")
RETRY_MAX_S = 15.0
#: While the feed cannot follow the bus, an open order page reads its order again this often.
FALLBACK_POLL_S = 5.0
#: While the feed follows the bus, an open order page still reads its order again this often (an event
#: only makes it sooner).
IDLE_READ_S = 60.0

View = TypeVar("View")


def order_of(topic: str, key: str, payload: dict[str, object] | None) -> str | None:
    """The order an event is about: the key of order events, the payload's ``order_id`` of payment
    events (they are keyed by the payment)."""
    if topic == "mart.orders.v1":
        return key
    order_id = (payload or {}).get("order_id")
    return str(order_id) if order_id else None


class OrderFeed:
    """Wakes the order pages that are open when their order's events pass."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.following = False  # the reader is positioned and reading (False while the bus is unreachable)
        self._watchers: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, order_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever something happens to ``order_id`` (the caller clears it)."""
        woke = asyncio.Event()
        self._watchers.setdefault(order_id, set()).add(woke)
        try:
            yield woke
        finally:
            watchers = self._watchers.get(order_id)
            if watchers is not None:
                watchers.discard(woke)
                if not watchers:
                    del self._watchers[order_id]

    def wake(self, order_id: str) -> None:
        for woke in self._watchers.get(order_id, ()):
            woke.set()

    async def run(self) -> None:
        """Follow the topics until cancelled; reconnect with backoff when the bus is unreachable."""
        delay = 0.5
        while True:
            try:
                async with self.bus.tail(TOPICS, from_beginning=False, follow=True) as records:
                    self.following = True
                    delay = 0.5
                    async for msg in records:
                        if not self._watchers:
                            continue
                        payload = None if msg.topic == "mart.orders.v1" else decode_event(msg).payload
                        if order_id := order_of(msg.topic, msg.key, payload):
                            self.wake(order_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("order_feed_interrupted", error=str(exc), retry_in_s=delay)
            self.following = False
            # Pages fall back to reading the order again on their own while the feed is down.
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


class StopWatching(Exception):
    """Raised by a live page's ``read`` when the page can no longer be shown (signed out, gone)."""


async def watch_order(
    feed: OrderFeed,
    order_id: str,
    first: View,
    read: Callable[[], Awaitable[View | None]],
    render: Callable[[View], str],
    expired: Callable[[], bool],
) -> AsyncIterator[str]:
    """An open order page's fragments: ``first`` rendered, then again each time the order's events wake it
    and the rendering differs. ``read`` gives the order again (``None``: keep what the page shows; it raises
    :class:`StopWatching` to end); the stream ends when ``expired()`` says so.

    ``first`` was read before the page was registered with the feed, so an event passing in between woke
    nobody: the order is read once more as soon as it is registered."""
    last = None
    view: View | None = first
    with feed.watch(order_id) as woke:
        woke.set()
        while True:
            if view is not None:
                html = render(view)
                if html != last:
                    yield html
                    last = html
            if expired():
                return
            timeout = IDLE_READ_S if feed.following else FALLBACK_POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woke.wait(), timeout=timeout)
            woke.clear()
            try:
                view = await read()
            except StopWatching:
                return
