"""The outage the fault suites inflict on one service's database
(``mart_testkit.fixtures.database_unavailable``): the service's connections are cut and new ones refused,
while backends that are not the service's (a superuser's, as an autovacuum worker's are) stay untouched
and never make the outage itself fail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from mart_testkit.fixtures import database_unavailable, eventually
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres

SUPERUSER = "postgres"  # the cluster's superuser (scripts/infra/postgres.sh: initdb -U postgres)


def _dsn(url: str, user: str | None = None) -> str:
    target = make_url(url).set(drivername="postgresql")
    if user is not None:
        target = target.set(username=user)
    return target.render_as_string(hide_password=False)


async def _gone(conn: asyncpg.Connection, pid: int) -> bool:
    return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0


async def test_the_outage_cuts_the_services_connections_and_leaves_a_superusers_alone(
    new_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await new_database("postgres")
    service = await asyncpg.connect(_dsn(url))
    # A backend on the database that the (non-superuser) test role may not terminate: terminating every
    # backend of the database failed with "must be a superuser to terminate superuser process" whenever an
    # autovacuum worker was on it.
    other = await asyncpg.connect(_dsn(url, SUPERUSER))
    try:
        async with database_unavailable(url) as cut:
            assert cut == 1
            await eventually(lambda: _gone(other, service.get_server_pid()), message="service backend ended")
            with pytest.raises(asyncpg.PostgresError, match="not currently accepting connections"):
                await asyncpg.connect(_dsn(url))
            assert await other.fetchval("SELECT 1") == 1
        again = await asyncpg.connect(_dsn(url))
        assert await again.fetchval("SELECT 1") == 1
        await again.close()
    finally:
        await other.close()
        service.terminate()
