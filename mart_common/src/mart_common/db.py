"""Async database access for PostgreSQL (asyncpg) and SQLite (aiosqlite), plus Alembic migrations.

The domain code only sees :class:`sqlalchemy.ext.asyncio.AsyncSession`; which engine runs is a setting.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import structlog
from sqlalchemy import MetaData, Table, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from mart_common import sqlite as local_sqlite
from mart_common.rows import RowReader, reading

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Database:
    """One service's database: an async engine, session factories and after-commit hand-overs."""

    def __init__(
        self,
        url: str,
        *,
        event_source: str | None = None,
        pool_size: int = 10,
        pool_timeout_s: float = 10.0,
        echo: bool = False,
    ) -> None:
        """``event_source``: the service name its sessions record events under (``record_event``).
        ``pool_size``: the PostgreSQL connections this process keeps, and never exceeds; a unit of work that
        finds them all busy waits up to ``pool_timeout_s`` for one, then fails (503 for a request)."""
        self.url = url
        self.engine_url = make_url(url)
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self.engine: AsyncEngine
        if self.is_sqlite:
            # statements inline on the loop's thread, writers queued in the process (mart_common.sqlite)
            self.engine, read_engine = local_sqlite.create_engines(url, echo=echo)
        else:
            # No statement may wait forever (a lock wait, a half-closed connection): fail, and let the
            # caller's retry (request, consumer, relay) take over. No pool_pre_ping: with asyncpg it costs
            # BEGIN / ";" / ROLLBACK on every checkout (three round trips, most of the mart's rollbacks);
            # a connection broken by a database restart fails its first statement instead, SQLAlchemy then
            # invalidates the whole pool, and the caller's retry gets a fresh connection
            # (docs/adr/0031-reads-without-begin-no-pre-ping.md).
            # A fixed pool, no overflow: a connection beyond the pool was closed again as soon as it came
            # back, so a steady load above the pool size opened (forked a backend, negotiated, authenticated)
            # a connection every few requests; one event loop keeps few statements in flight, and a unit of
            # work beyond the pool waits for a connection instead (docs/adr/0054-a-fixed-connection-pool.md).
            self.engine = create_async_engine(
                url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=pool_timeout_s,
                pool_recycle=1800,
                connect_args={"command_timeout": 60, "timeout": 10, **asyncpg_ssl(self.engine_url)},
            )
            # READ COMMITTED gives every statement its own snapshot anyway: a read-only unit of work
            # loses nothing without BEGIN/COMMIT, and saves two round trips.
            read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_engine = read_engine
        # A session class of this database's own: its commit hooks see only this database's sessions
        # (the embedded mode runs six databases in one process).
        self._session_class: type[Session] = type("MartSession", (Session,), {})
        info = {"event_source": event_source} if event_source else None
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=self._session_class, info=info
        )
        self.read_sessionmaker = async_sessionmaker(
            read_engine, expire_on_commit=False, sync_session_class=self._session_class, info=info
        )
        self._handovers: dict[str, Callable[[Any], None]] = {}
        self._plans: OrderedDict[Any, Any] = OrderedDict()  # read_rows: statements compiled for the driver
        event.listen(self._session_class, "after_commit", self._after_commit)
        event.listen(self._session_class, "after_rollback", self._after_rollback)

    def after_commit(self, key: str, listener: Callable[[Any], None]) -> None:
        """Hand ``session.info[key]`` to ``listener`` after a commit of a session that set it.

        A rolled-back transaction hands over nothing (its ``info[key]`` is dropped). The work loops of
        ``mart_common.work`` (the outbox relay, notification deliveries, payment provider calls) receive
        their work this way.
        """
        self._handovers[key] = listener

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint was released: the transaction goes on, nothing is committed yet
        for key, listener in self._handovers.items():
            value = session.info.pop(key, None)
            if value is not None:
                listener(value)

    def _after_rollback(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint was rolled back; what the transaction recorded outside it still stands
        for key in self._handovers:
            session.info.pop(key, None)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits."""
        async with _closed(self.sessionmaker()) as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any exception."""
        async with _closed(self.sessionmaker()) as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncSession]:
        """A session whose every statement commits on its own: no BEGIN/COMMIT round trips on PostgreSQL,
        for writes that are one statement each (a data-modifying ``WITH`` can make several changes one
        statement). On SQLite, where writers queue for the file, one transaction around the session."""
        if not self.is_postgres:
            async with self.transaction() as session:
                yield session
            return
        async with _closed(self.read_sessionmaker()) as session:
            yield session
            if session.in_transaction():
                await session.commit()  # nothing to send (autocommit): ends the session's own bookkeeping

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only: no BEGIN/COMMIT on PostgreSQL (each statement is its own
        READ COMMITTED snapshot, as inside a transaction), a deferred (shared) transaction on SQLite
        instead of the writers' BEGIN IMMEDIATE. Nothing written through it is guaranteed."""
        async with _closed(self.read_sessionmaker()) as session:
            yield session
            if session.in_transaction():
                await session.commit()

    @asynccontextmanager
    async def read_rows(self) -> AsyncIterator[RowReader]:
        """A reader of plain rows (Core ``select`` statements), as :meth:`read` but without an ORM session:
        no identity map, no session events, no unit-of-work bookkeeping; on PostgreSQL each statement is
        compiled once and runs on the driver (:mod:`mart_common.rows`). For the hot reads that answer with
        rows (``Page.rows`` takes it as it takes a session)."""
        async with reading(self._read_engine, self._plans) as reader:
            yield reader

    async def ping(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        try:
            async with asyncio.timeout(3):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def retry_while_unreachable(self, work: Callable[[], Awaitable[T]], *, what: str) -> T:
        """``await work()``; when it fails while this database does not answer ``SELECT 1``, wait until it
        answers (backoff 0.5 s doubling to 5 s, logged as ``database_unreachable_waiting``) and run it
        again. A failure with the database up is raised: it is not the outage's.

        For work that must not be lost to a short outage: an event's handler (its retries would run out and
        dead-letter a good event), the record of what a provider already did (unrecorded, it is done again).
        """
        while True:
            try:
                return await work()
            except Exception:
                if await self.ping():
                    raise
                log.warning("database_unreachable_waiting", what=what)
                delay = 0.5
                while not await self.ping():
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def create_all(self, metadatas: Iterable[MetaData]) -> None:
        """Create tables directly (internal stores such as the in-process bus log)."""
        async with self.engine.begin() as conn:
            for md in metadatas:
                await conn.run_sync(md.create_all)

    async def migrate(self, migrations_package: str, revision: str = "head") -> None:
        """Upgrade the schema to the newest Alembic revision of ``migrations_package`` (or to
        ``revision``).

        The package holds Alembic's ``env.py`` and ``versions/``; see :mod:`mart_common.migrations`.
        """
        from alembic import command
        from alembic.config import Config

        script_location = str(resources.files(migrations_package))
        cfg = Config()
        cfg.set_main_option("script_location", script_location)

        def _upgrade(sync_conn: Any) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, revision)

        async with self.engine.begin() as conn:
            if self.is_postgres:
                # Several replicas may start together: one migrates, the others wait for it.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7425001)"))
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        """Close the pool's connections (bounded: a broken connection must not hang a shutdown)."""
        try:
            async with asyncio.timeout(10):
                await self.engine.dispose()
                await self._read_engine.dispose()  # its own pool on SQLite (query_only connections)
        except TimeoutError:
            structlog.get_logger(__name__).warning(
                "database_dispose_timed_out", url=self.engine.url.render_as_string()
            )


@asynccontextmanager
async def _closed(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """``session``, closed at the end: shielded from cancellation only when a transaction is still open.

    ``AsyncSession``'s own ``async with`` closes every session in a task of its own, shielded, so that a
    cancellation cannot interrupt the rollback and keep the connection from its pool: three turns of the
    event loop and about 40 µs per session, half of a session's whole cost. A session whose transaction
    ended (committed or rolled back) has nothing left to send when it closes, so it closes inline.
    """
    try:
        yield session
    finally:
        if session.in_transaction():
            await asyncio.shield(asyncio.ensure_future(session.close()))
        else:
            await session.close()


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def asyncpg_ssl(url: URL) -> dict[str, Any]:
    """asyncpg's ``ssl`` argument for a PostgreSQL URL: off for a loopback or Unix-socket server the URL
    and ``PGSSLMODE`` say nothing about, where TLS protects nothing and asyncpg's default (``prefer``) costs
    every new connection a TLS request first; otherwise nothing, so ``?ssl=…`` / ``?sslmode=…`` in the URL
    or ``PGSSLMODE`` decide, as asyncpg documents (docs/scaling.md, "Connections")."""
    if {"ssl", "sslmode"} & set(url.query) or os.environ.get("PGSSLMODE"):
        return {}
    host = url.host or url.query.get("host")
    if host is None or host in _LOOPBACK or str(host).startswith("/"):
        return {"ssl": False}
    return {}


async def flush_unique(session: AsyncSession, conflict: Exception) -> None:
    """Write the session's pending rows now, inside a savepoint, and raise ``conflict`` if a unique key
    is taken: a use-case answers the conflict (409) itself and its commit never fails for it. Record events
    after this call (``record_event`` refuses to run inside a savepoint)."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise conflict from exc


async def insert_ignoring_duplicates(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its primary/unique key exists; True when the row was inserted.

    Used by the inbox (first delivery wins) and by read models keyed on natural ids.
    """
    stmt = _insert_ignoring(_dialect(session), table)
    result = await session.execute(stmt, values)
    return bool(result.rowcount)


async def upsert(
    session: AsyncSession,
    table: Table,
    values: dict[str, Any],
    *,
    keys: Sequence[str],
    where: Callable[[Any], Any] | None = None,
) -> None:
    """Insert ``values`` or, when a row with the same ``keys`` exists, update it to ``values``.

    ``where(excluded)``: the update happens only where this condition holds (``excluded`` is the row
    proposed for insertion), e.g. ``lambda excluded: table.c.version < excluded.version`` so an older
    version never overwrites a newer one. The statement is built once per ``where``: pass a module-level
    function, not a new lambda per call.
    """
    stmt = _upsert(_dialect(session), table, tuple(keys), tuple(values), where)
    await session.execute(stmt, values)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


# Statements built once per table (values are bound at execution): these run for every event handled.
@functools.cache
def _insert_ignoring(dialect: str, table: Table) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


@functools.cache
def _upsert(
    dialect: str,
    table: Table,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    where: Callable[[Any], Any] | None = None,
) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: stmt.excluded[c] for c in columns if c not in keys},
        where=None if where is None else where(stmt.excluded),
    )
