"""Change feeds: every process of a service learns, within milliseconds, that some of its tables changed.

A :class:`ChangeFeed` watches tables of one database. A transaction that writes to them (ORM objects or
INSERT/UPDATE/DELETE statements through a session) moves the feed's ``version`` in this process when it
commits, and on PostgreSQL sends ``NOTIFY <channel>`` in the same transaction, so every other process
listening on the channel (the other replicas) moves its version when the commit is done. A cache keyed on
``version`` (see :class:`mart_common.responses.ResponseCache`) never serves an answer older than the last
commit this process knows of. While the listening connection is down the feed is not ``live`` and caches
must not be used; it reconnects by itself (docs/adr/0021-catalog-reads.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import Table, event, text
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from mart_common.db import Database, asyncpg_ssl
from mart_common.tasks import stop_gracefully

log = structlog.get_logger(__name__)


class ChangeFeed:
    """Moves ``version`` on every committed write to ``tables`` of ``db``, in every listening process."""

    def __init__(self, db: Database, channel: str, tables: Iterable[Table]) -> None:
        self.db = db
        self.channel = channel
        self.tables = frozenset(tables)
        self.version = 0
        self._key = f"mart_changes_{channel}"
        self._listening = not db.is_postgres  # SQLite: one process, local commits are all there is
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        cls = db.sessionmaker.kw["sync_session_class"]
        event.listen(cls, "after_flush", self._after_flush)
        event.listen(cls, "do_orm_execute", self._on_execute)
        event.listen(cls, "before_commit", self._before_commit)
        event.listen(cls, "after_commit", self._after_commit)
        event.listen(cls, "after_rollback", self._after_rollback)

    @property
    def live(self) -> bool:
        """True while every change, local or from another process, moves ``version``."""
        return self._listening

    # --- detecting writes (SQLAlchemy session events, run inside the session's greenlet) -------

    def _after_flush(self, session: Session, _flush: UOWTransaction) -> None:
        for obj in (*session.new, *session.dirty, *session.deleted):
            if getattr(obj, "__table__", None) in self.tables:
                session.info[self._key] = True
                return

    def _on_execute(self, state: ORMExecuteState) -> None:
        if (state.is_insert or state.is_update or state.is_delete) and getattr(
            state.statement, "table", None
        ) in self.tables:
            state.session.info[self._key] = True

    def _before_commit(self, session: Session) -> None:
        if self.db.is_postgres and session.info.get(self._key) and not session.in_nested_transaction():
            # Delivered by PostgreSQL when (and only if) this transaction commits.
            session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})

    def _after_commit(self, session: Session) -> None:
        if not session.in_nested_transaction() and session.info.pop(self._key, False):
            self.version += 1

    def _after_rollback(self, session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop(self._key, None)

    # --- listening (PostgreSQL) -----------------------------------------------------------------

    async def start(self) -> None:
        if self.db.is_postgres and self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"changes-{self.channel}")

    async def stop(self) -> None:
        if self._task is not None:
            # it only waits for notifications (no transaction in hand): no grace needed
            await stop_gracefully([self._task], grace_s=0)
            self._task = None
        await self._close()

    async def _listen(self) -> None:
        import asyncpg

        ssl = asyncpg_ssl(self.db.engine.url)
        dsn = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            lost = asyncio.Event()
            try:
                self._connection = await asyncpg.connect(dsn, timeout=10, **ssl)
                self._connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await self._connection.add_listener(self.channel, self._notified)
                self.version += 1  # whatever changed while nobody listened
                self._listening = True
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change_feed_unavailable", channel=self.channel, error=str(exc))
            self._listening = False
            await self._close()
            await asyncio.sleep(1.0)

    def _notified(self, *_args: Any) -> None:
        self.version += 1

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._listening = not self.db.is_postgres
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await connection.close()
