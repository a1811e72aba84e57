"""SQLite for the embedded mode and the tests: statements run on the event loop's thread, and the
process's writers of a file take turns on an asyncio lock instead of in SQLite's busy handler.

Why (docs/adr/0008-sqlite-inline-on-the-event-loop.md): through ``aiosqlite`` every statement is four or
five hops to a worker thread and back (cursor, execute, fetch, close; BEGIN and COMMIT each one more), and a
writer that finds the file locked sleeps in SQLite's busy handler (1, 2, 5 … 100 ms) with the event
loop idle. A WAL-mode SQLite statement of this application takes microseconds, less than one hop, so
here they run inline: :func:`connect` gives SQLAlchemy's aiosqlite dialect a connection with
aiosqlite's interface whose coroutines complete at once on the calling thread.

The guarantees stay SQLite's: one writer per file (``BEGIN IMMEDIATE``, taken after this process's
previous writer has committed), readers beside it (WAL). What changes is who waits where:

- writers of this process wait on :class:`Writers` (an asyncio lock), never in SQLite, so the loop
  keeps running while they wait;
- read-only sessions (:meth:`mart_common.db.Database.read`) use connections opened with
  ``PRAGMA query_only``: a read transaction can never need the write lock (a write through one fails
  at once instead of waiting while it holds the loop);
- another *process* writing the same file (a ``mart`` CLI command on the bus log) is arbitrated by
  SQLite's busy timeout, during which this process's loop waits (such writes are rare and short).
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_, in_greenlet

BUSY_TIMEOUT_MS = 30_000


# --- an aiosqlite-shaped connection that runs inline ------------------------------------------------


class _Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Now:
    """What SQLAlchemy's aiosqlite adapter uses of aiosqlite's request queue (to set the isolation
    level): run the function now and resolve its future."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """The parts of ``aiosqlite.Connection`` SQLAlchemy's aiosqlite dialect uses, run inline."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # checked by the dialect before COMMIT
        self._tx = _Now()

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value


def _opener(path: str, *, query_only: bool) -> Callable[[], Any]:
    async def connect() -> InlineConnection:
        # autocommit mode: the engine's "begin" hook, not the driver, opens transactions
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            *(["query_only=ON"] if query_only else []),
        ):
            conn.execute(f"PRAGMA {pragma}")
        return InlineConnection(conn)

    return connect


# --- one writer at a time per file, queued in this process ------------------------------------------


class Writers:
    """Turns for the write transactions of one SQLite file in this process: taken before ``BEGIN
    IMMEDIATE``, given back right after the COMMIT or ROLLBACK (or when the connection goes away)."""

    def __init__(self, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        self.timeout_s = timeout_s
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._held: dict[int, asyncio.Lock] = {}  # id(DBAPI connection) -> the turn it holds

    def acquire(self, dbapi_conn: Any) -> None:
        if not in_greenlet():
            return  # synchronous use outside the async engine: SQLite's busy timeout arbitrates
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        await_(self._acquire(lock))
        self._held[id(dbapi_conn)] = lock

    async def _acquire(self, lock: asyncio.Lock) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked (by a writer of this process)") from None

    def release(self, dbapi_conn: Any) -> None:
        lock = self._held.pop(id(dbapi_conn), None)
        if lock is not None:
            lock.release()


_WRITERS: dict[str, Writers] = {}


def create_engines(url: str, **kwargs: Any) -> tuple[AsyncEngine, AsyncEngine]:
    """The engine for a SQLite file and the one for its read-only sessions (``query_only``
    connections, deferred ``BEGIN``). In-memory databases keep aiosqlite (one connection: no turns)."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _immediate_transactions(engine, None)
        return engine, engine.execution_options(mart_read_only=True)
    writers = _WRITERS.setdefault(path, Writers())
    engine = create_async_engine(url, async_creator=_opener(path, query_only=False), **kwargs)
    reader = create_async_engine(url, async_creator=_opener(path, query_only=True), **kwargs)
    _immediate_transactions(engine, writers)
    _immediate_transactions(reader, None)
    return engine, reader.execution_options(mart_read_only=True)


def _immediate_transactions(engine: AsyncEngine, writers: Writers | None) -> None:
    # SQLite upgrades a read lock to a write lock lazily and fails at once when two writers race:
    # BEGIN IMMEDIATE takes the write lock up front, after this process's previous writer is done.
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if not isinstance(getattr(dbapi_conn, "_connection", None), InlineConnection):
            # aiosqlite (in-memory): autocommit mode and the pragmas, as _opener does for the others
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("mart_read_only"):
            conn.exec_driver_sql("BEGIN")  # WAL: readers run beside the writer
            return
        dbapi_conn = conn.connection.dbapi_connection
        if writers is not None:
            writers.acquire(dbapi_conn)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if writers is not None:
                writers.release(dbapi_conn)
            raise

    if writers is None:
        return
    dialect = sync_engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(conn: Any) -> None:
        try:
            commit(conn)
        finally:
            writers.release(getattr(conn, "dbapi_connection", conn))

    def do_rollback(conn: Any) -> None:
        try:
            rollback(conn)
        finally:
            writers.release(getattr(conn, "dbapi_connection", conn))

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    for ending in ("checkin", "close", "invalidate", "soft_invalidate"):
        # a connection that goes away inside a transaction (no COMMIT/ROLLBACK seen) gives its turn back
        event.listen(sync_engine.pool, ending, lambda dbapi_conn, *_: writers.release(dbapi_conn))
