"""Login throttling: a sliding window of recent failures per account and per client address.

In memory and per process (see docs/decisions.md): replicas each keep their own counts, and a restart
forgets them. Good enough to stop online guessing against one instance; a shared store would be next.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque


class SlidingWindow:
    """At most ``limit`` hits per key within ``window_s`` seconds; bounded number of keys."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again, or None when it is under the limit."""
        hits = self._prune(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return hits[-self.limit] + self.window_s - now

    def hit(self, key: str, now: float) -> None:
        hits = self._prune(key, now)
        if hits is None:
            hits = self._hits[key] = deque()
        hits.append(now)
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class LoginThrottle:
    """Failed logins per account (email) and per client; a success clears the account's count."""

    def __init__(self, *, per_account: int, per_client: int, window_s: float) -> None:
        self.accounts = SlidingWindow(per_account, window_s)
        self.clients = SlidingWindow(per_client, window_s)

    def retry_after(self, email: str, client: str) -> int | None:
        """Whole seconds to wait (for ``Retry-After``), or None when a login may be attempted."""
        now = time.monotonic()
        waits = [
            w for w in (self.accounts.retry_after(email, now), self.clients.retry_after(client, now)) if w
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, email: str, client: str) -> None:
        now = time.monotonic()
        self.accounts.hit(email, now)
        self.clients.hit(client, now)

    def succeeded(self, email: str) -> None:
        self.accounts.reset(email)
