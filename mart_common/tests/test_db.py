"""The database access every service shares (mart_common.db): a PostgreSQL pool of a fixed size that a
busy process neither exceeds nor re-opens, and no TLS attempt on a loopback connection unless asked
(docs/adr/0054-a-fixed-connection-pool.md)."""

from __future__ import annotations

import asyncio

import pytest
from mart_common.db import Database, asyncpg_ssl
from sqlalchemy import make_url, text


async def test_a_busy_process_shares_its_fixed_pool_and_opens_no_connection_beyond_it(new_database) -> None:
    db = Database(await new_database("postgres"), pool_size=3)
    try:

        async def read() -> int:
            async with db.read() as session:
                # held for a while: every request wants a connection at the same time
                return int(await session.scalar(text("SELECT pg_backend_pid() FROM pg_sleep(0.02)")))

        backends: set[int] = set()
        for _ in range(3):  # a steady load: waves of requests, more at once than the pool holds
            backends.update(await asyncio.gather(*(read() for _ in range(24))))
        # the waiting requests were served by the same three connections, none opened and closed again
        assert len(backends) == 3
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://u@127.0.0.1:5432/d", {"ssl": False}),
        ("postgresql+asyncpg://u@localhost/d", {"ssl": False}),
        ("postgresql+asyncpg://u@[::1]:5432/d", {"ssl": False}),
        ("postgresql+asyncpg://u@/d?host=/var/run/postgresql", {"ssl": False}),
        # a remote server, or a URL that says what it wants: asyncpg's own rules (prefer, require...)
        ("postgresql+asyncpg://u@db.example.com:5432/d", {}),
        ("postgresql+asyncpg://u@127.0.0.1:5432/d?ssl=require", {}),
        ("postgresql+asyncpg://u@127.0.0.1:5432/d?sslmode=verify-full", {}),
    ],
)
def test_tls_is_left_to_the_url_except_on_loopback(url: str, expected: dict, monkeypatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert asyncpg_ssl(make_url(url)) == expected


def test_pgsslmode_decides_for_a_loopback_server_too(monkeypatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "require")
    assert asyncpg_ssl(make_url("postgresql+asyncpg://u@127.0.0.1:5432/d")) == {}
