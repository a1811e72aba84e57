"""Wait until something is true: the one polling loop of the tests, the CLI and the bench.

``wait_until`` (async) and ``wait_until_sync`` call ``check`` every ``interval`` seconds until its result is
accepted (truthy by default, or ``until(result)``); errors listed in ``retry_on`` count as "not yet"; any
other error propagates at once. ``check`` runs at least once; after each try that is not accepted, past
``timeout`` they raise :class:`PollTimeout`, which carries the last result or error so that a caller can
say what it saw.
Why not tenacity or stamina: docs/adr/0045-polling-helper.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PollTimeout(TimeoutError):
    """``check`` was not accepted within ``timeout`` seconds; ``last`` is its last result or error."""

    def __init__(self, timeout: float | None, what: str, last: Any) -> None:
        self.timeout = timeout
        self.what = what
        self.last = last
        super().__init__(f"timed out after {timeout or 0:.0f}s waiting for {what} (last: {last!r})")


class _Poll:
    """The loop's bookkeeping, shared by the async and the sync variant."""

    def __init__(
        self,
        check: Callable[[], Any],
        timeout: float | None,
        until: Callable[[Any], object] | None,
        retry_on: tuple[type[BaseException], ...],
        what: str,
    ) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.until = until or bool
        self.retry_on = retry_on
        self.what = what or repr(check)
        self.last: Any = None

    def accepted(self, result: Any) -> bool:
        self.last = result
        return bool(self.until(result))

    def expire(self) -> None:
        """Raise :class:`PollTimeout` if the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise PollTimeout(self.timeout, self.what, self.last)


async def wait_until(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float | None = 30.0,
    interval: float = 0.1,
    until: Callable[[T], object] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """Await ``check()`` until its result is accepted; returns that result (``timeout=None``: no limit)."""
    poll = _Poll(check, timeout, until, retry_on, what)
    while True:
        try:
            result = await check()
            if poll.accepted(result):
                return result
        except retry_on as exc:
            poll.last = exc
        poll.expire()
        await asyncio.sleep(interval)


def wait_until_sync(
    check: Callable[[], T],
    *,
    timeout: float | None = 30.0,
    interval: float = 0.1,
    until: Callable[[T], object] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """:func:`wait_until` for blocking code (process supervision, set-up scripts)."""
    poll = _Poll(check, timeout, until, retry_on, what)
    while True:
        try:
            result = check()
            if poll.accepted(result):
                return result
        except retry_on as exc:
            poll.last = exc
        poll.expire()
        time.sleep(interval)


__all__ = ["PollTimeout", "wait_until", "wait_until_sync"]
