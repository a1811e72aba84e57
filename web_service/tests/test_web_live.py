"""An open order page's stream of status blocks (web_service.live.watch_order): what it pushes when the
order changes, whether or not an event said so at the right moment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from web_service.live import OrderFeed, StopWatching, watch_order

ORDER = "3f0c2a8e-0000-4000-8000-000000000001"
#: Long enough for a read and a render on a busy machine, far below the minute a missed wake would cost.
PROMPT_S = 2.0


class Order:
    """The order as the APIs would give it: its status can change with or without an event."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.reads = 0
        self.down = False
        self.gone = False
        self.was_read = asyncio.Event()

    async def read(self) -> str | None:
        self.reads += 1
        self.was_read.set()
        if self.gone:
            raise StopWatching
        return None if self.down else self.status


def following_feed() -> OrderFeed:
    feed = OrderFeed(cast(Any, None))  # its reader is not started: the tests say when events pass
    feed.following = True
    return feed


def stream(feed: OrderFeed, order: Order, first: str) -> AsyncIterator[str]:
    return watch_order(feed, ORDER, first, order.read, render=lambda s: f"<p>{s}</p>", expired=lambda: False)


async def next_block(updates: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(updates), PROMPT_S)


async def read_once_registered(order: Order) -> None:
    await asyncio.wait_for(order.was_read.wait(), PROMPT_S)


async def pushed_on_wake(feed: OrderFeed, order: Order, updates: AsyncIterator[str], status: str) -> str:
    """Once the stream has read the order on registering, the order turns ``status`` and its event passes
    (after another order's): what the stream pushes next."""
    pending = asyncio.ensure_future(anext(updates))
    await read_once_registered(order)
    order.down = False
    order.status = status
    feed.wake("another-order")
    feed.wake(ORDER)
    return await asyncio.wait_for(pending, PROMPT_S)


async def test_a_change_between_the_first_read_and_the_registration_is_pushed_without_an_event() -> None:
    feed = following_feed()
    # the page read AWAITING_PAYMENT; PaymentSucceeded passed before it watched
    order = Order("PAID")
    updates = stream(feed, order, first="AWAITING_PAYMENT")
    assert await next_block(updates) == "<p>AWAITING_PAYMENT</p>"
    assert await next_block(updates) == "<p>PAID</p>"
    await updates.aclose()


async def test_an_event_for_the_order_pushes_its_new_status_and_only_changes_are_pushed() -> None:
    feed = following_feed()
    order = Order("AWAITING_PAYMENT")
    updates = stream(feed, order, first="AWAITING_PAYMENT")
    assert await next_block(updates) == "<p>AWAITING_PAYMENT</p>"
    # the read on registering found the same status (nothing pushed); the event's read finds PAID
    assert await pushed_on_wake(feed, order, updates, "PAID") == "<p>PAID</p>"
    assert order.reads == 2
    await updates.aclose()


async def test_a_service_that_is_down_keeps_the_page_and_the_next_event_updates_it() -> None:
    feed = following_feed()
    order = Order("PENDING")
    order.down = True
    updates = stream(feed, order, first="PENDING")
    assert await next_block(updates) == "<p>PENDING</p>"
    assert await pushed_on_wake(feed, order, updates, "CANCELLED") == "<p>CANCELLED</p>"
    await updates.aclose()


async def test_the_stream_ends_when_the_order_can_no_longer_be_read_and_leaves_no_watcher() -> None:
    feed = following_feed()
    order = Order("PENDING")
    order.gone = True
    updates = stream(feed, order, first="PENDING")
    assert await next_block(updates) == "<p>PENDING</p>"
    with pytest.raises(StopAsyncIteration):
        await next_block(updates)
    assert feed._watchers == {}


async def test_a_page_closed_by_the_browser_leaves_no_watcher() -> None:
    feed = following_feed()
    updates = stream(feed, Order("PENDING"), first="PENDING")
    await next_block(updates)
    assert ORDER in feed._watchers
    await updates.aclose()
    assert feed._watchers == {}
