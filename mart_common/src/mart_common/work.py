"""Work that follows a commit, done by a loop of the process: one mechanism for the outbox relay,
notification-service's dispatcher and payment-service's provider calls
(docs/adr/0023-work-handed-over-after-commit.md).

- **Hand-over after the commit.** A use-case records the work as rows in its transaction (so a crash loses
  nothing) and puts what doing it needs in memory with :func:`hand_over`. The :class:`Handover` registered
  on the database under the same key receives those items when — and only when — the transaction commits,
  and wakes its loop. A rolled-back transaction hands over nothing; a savepoint released inside a
  transaction is not its commit (:meth:`mart_common.db.Database.after_commit`).
- **Leases.** Work handed over carries a lease taken in the recording transaction (:data:`HANDOVER_LEASE`).
  Work found by a search is claimed under a lease with :func:`claim_due`. If the process dies before the
  work is done, any replica's search takes it again once the lease has run out.
- **The loop.** :class:`WorkLoop` runs one round at a time; it wakes on a hand-over or when the round's
  own timer says so, backs off exponentially after a failed round, and stops cleanly: told to stop, it lets
  the round in hand finish (bounded: :func:`mart_common.tasks.stop_gracefully`) and drains what the owner
  says is still in hand.
- **Retries** of one piece of work wait :func:`backoff_s` (doubling, capped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy import ColumnElement, Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mart_common.db import Database
from mart_common.tasks import stop_gracefully

log = structlog.get_logger(__name__)

T = TypeVar("T")

HANDOVER_LEASE = timedelta(seconds=60)
"""The lease a use-case takes, inside its transaction, on work it hands to its own process after the commit
(a provider call, a notification delivery): if the process dies before doing it, the work's search (any
replica) takes it once the lease runs out."""


def hand_over(session: AsyncSession, key: str, item: Any) -> None:
    """Give ``item`` to the :class:`Handover` registered under ``key`` once ``session``'s transaction commits
    (nothing if it rolls back)."""
    session.info.setdefault(key, []).append(item)


class Handover(Generic[T]):
    """What committed transactions handed over under ``key``, in commit order, until the loop takes it.

    ``accept``: whether items are kept right now (the outbox relay keeps rows only while it is the database's
    sole publisher; otherwise its sweep finds them in the table). The loop is woken either way.
    """

    def __init__(
        self,
        db: Database,
        key: str,
        wake: Callable[[], None],
        *,
        accept: Callable[[], bool] | None = None,
    ) -> None:
        self.key = key
        self.items: list[T] = []
        self._wake = wake
        self._accept = accept
        db.after_commit(key, self._received)

    def _received(self, items: list[T]) -> None:
        if self._accept is None or self._accept():
            self.items.extend(items)
        self._wake()

    def take(self, limit: int | None = None) -> list[T]:
        """Remove and return the oldest ``limit`` items (all of them by default)."""
        if limit is None:
            taken, self.items = self.items, []
        else:
            taken, self.items = self.items[:limit], self.items[limit:]
        return taken

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


async def claim_due(
    session: AsyncSession,
    table: Table,
    *,
    lease: timedelta,
    now: datetime,
    where: Sequence[ColumnElement[bool]] = (),
    ids: Sequence[Any] | None = None,
    limit: int | None = None,
    count_attempt: bool = False,
    returning: Sequence[ColumnElement[Any]] = (),
) -> Sequence[Row[Any]]:
    """Claim work rows that are due (``next_attempt_at <= now`` and ``where``) under a lease: their
    ``next_attempt_at`` becomes ``now + lease`` (and ``attempts`` grows by one with ``count_attempt``), so
    no other loop takes them until the lease runs out. Returns ``returning`` of the rows claimed.

    ``ids``: only these rows (work handed over or found already; the conditional UPDATE decides, so of two
    loops only one gets a row). ``limit``: the oldest due rows, locked with ``FOR UPDATE SKIP LOCKED`` first
    (PostgreSQL; SQLite's writers are serialised), so concurrent searches of replicas take different rows.
    The table has ``id``, ``next_attempt_at`` and, with ``count_attempt``, ``attempts``.
    """
    due = [table.c.next_attempt_at <= now, *where]
    if limit is not None:
        found = await session.scalars(
            select(table.c.id)
            .where(*due, *([table.c.id.in_(ids)] if ids is not None else []))
            .order_by(table.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(found.all())
    if ids is not None and not ids:
        return []
    values: dict[str, Any] = {"next_attempt_at": now + lease}
    if count_attempt:
        values["attempts"] = table.c.attempts + 1
    statement = update(table).where(*due).values(values).returning(*returning)
    if ids is not None:
        statement = statement.where(table.c.id.in_(ids))
    return (await session.execute(statement)).all()


def backoff_s(attempts: int, *, initial_s: float, max_s: float) -> float:
    """The wait after ``attempts`` failed attempts: ``initial_s``, twice that, four times … capped at
    ``max_s``."""
    return min(max_s, initial_s * (2 ** max(0, attempts - 1)))


#: A round of a :class:`WorkLoop`: returns the seconds until the next round is due (0: at once, more is in
#: hand; ``None``: only when woken).
Round = Callable[[], Awaitable[float | None]]


class WorkLoop:
    """One background task of a process that does one kind of work, one round at a time.

    Between rounds it waits for :meth:`wake` (work handed over) or for the delay the round returned. A
    round that raises is logged (``on_failure`` to do it otherwise) and the next one waits an exponential
    backoff (``backoff_initial_s`` doubling up to ``backoff_max_s``), reset by a round that succeeds.
    :meth:`stop` ends it: the round in hand finishes (bounded by ``grace_s``), then rounds go on only while
    ``in_hand()`` says work already taken must still be done.
    """

    def __init__(
        self,
        name: str,
        round: Round,
        *,
        in_hand: Callable[[], bool] | None = None,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        on_failure: Callable[[Exception, float], None] | None = None,
        grace_s: float = 10.0,
    ) -> None:
        self.name = name
        self._round = round
        self._in_hand = in_hand or (lambda: False)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._on_failure = on_failure or self._log_failure
        self.grace_s = grace_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def stopping(self) -> bool:
        """Told to stop: rounds should finish what they hold and take nothing new."""
        return self._stopping

    def wake(self) -> None:
        """Run the next round now (work was handed over)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Let the round in hand finish (bounded), drain what is in hand, then end the task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_gracefully([self._task], self.grace_s)
            self._task = None

    def _done(self) -> bool:
        return self._stopping and not self._in_hand()

    async def _run(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            self._wake.clear()
            try:
                wait = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                self._on_failure(exc, backoff)
                await asyncio.sleep(backoff)  # at most backoff_max_s: within the stop's grace period
                backoff = min(self.backoff_max_s, backoff * 2)
                continue
            backoff = self.backoff_initial_s
            if self._done():
                return
            if wait == 0 or self._stopping:
                continue
            if wait is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
            if self._done():
                return

    def _log_failure(self, exc: Exception, retry_in: float) -> None:
        log.error("work_round_failed", loop=self.name, error=repr(exc), retry_in=retry_in, exc_info=exc)
