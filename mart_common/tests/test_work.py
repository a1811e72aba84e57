"""The one mechanism for work that follows a commit (docs/adr/0023-work-handed-over-after-commit.md): what
a transaction hands over reaches the loop only when it commits; rows are claimed under a lease by one
claimer at a time; the loop wakes, backs off after a failure, and stops cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from mart_common.clock import as_utc, utcnow
from mart_common.db import Database
from mart_common.work import Handover, WorkLoop, backoff_s, claim_due, hand_over
from mart_testkit.fixtures import eventually
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Uuid, insert

METADATA = MetaData()
JOBS = Table(
    "jobs",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.create_all([METADATA])
    try:
        yield database
    finally:
        await database.dispose()


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, initial_s=5, max_s=30) for n in range(1, 6)] == [5, 10, 20, 30, 30]


async def test_only_a_committed_transaction_hands_its_work_over(db: Database) -> None:
    wakes = []
    handover: Handover[str] = Handover(db, "test-work", lambda: wakes.append(1))
    async with db.transaction() as session:
        hand_over(session, "test-work", "first")
        job = {"id": uuid.uuid4(), "status": "NEW", "next_attempt_at": utcnow()}
        await session.execute(insert(JOBS), job)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            hand_over(session, "test-work", "rolled back")
            raise RuntimeError("the use-case failed")
    async with db.transaction() as session:
        async with session.begin_nested():
            hand_over(session, "test-work", "second")
        assert handover.take() == ["first"], "a released savepoint is not the transaction's commit"
    assert handover.take() == ["second"]
    assert len(wakes) == 2 and not handover


async def test_due_rows_are_claimed_under_a_lease_by_one_claimer_only(db: Database) -> None:
    now = utcnow()
    rows = [
        {"id": uuid.uuid4(), "status": status, "attempts": 0, "next_attempt_at": now - timedelta(seconds=age)}
        for status, age in (("NEW", 30), ("NEW", 20), ("NEW", 10), ("DONE", 40), ("NEW", -60))
    ]
    async with db.transaction() as session:
        await session.execute(insert(JOBS), rows)
    lease = timedelta(minutes=5)

    async def claim(**how) -> list:
        async with db.transaction() as session:
            claimed = await claim_due(
                session,
                JOBS,
                lease=lease,
                now=utcnow(),
                where=[JOBS.c.status == "NEW"],
                returning=[JOBS.c.id, JOBS.c.attempts, JOBS.c.next_attempt_at],
                **how,
            )
        return list(claimed)

    oldest = await claim(limit=2)
    assert {r.id for r in oldest} == {rows[0]["id"], rows[1]["id"]}, "the two oldest due rows, not DONE"
    assert all(r.attempts == 0 and as_utc(r.next_attempt_at) > utcnow() + lease / 2 for r in oldest)
    # handed-over ids: the conditional UPDATE decides, and a leased row is not due again
    ids = [rows[0]["id"], rows[2]["id"], rows[4]["id"]]
    first, second = await claim(ids=ids, count_attempt=True), await claim(ids=ids, count_attempt=True)
    assert [(r.id, r.attempts) for r in first] == [(rows[2]["id"], 1)]
    assert second == []
    assert await claim(limit=10) == [], "every due row is leased"


async def test_concurrent_searches_claim_different_rows(db: Database) -> None:
    now = utcnow() - timedelta(seconds=1)
    ids = [uuid.uuid4() for _ in range(6)]
    async with db.transaction() as session:
        await session.execute(
            insert(JOBS), [{"id": i, "status": "NEW", "attempts": 0, "next_attempt_at": now} for i in ids]
        )

    async def search() -> list[uuid.UUID]:
        async with db.transaction() as session:
            claimed = await claim_due(
                session, JOBS, lease=timedelta(minutes=1), now=utcnow(), limit=3, returning=[JOBS.c.id]
            )
            await asyncio.sleep(0.05)  # hold the claim while the other search runs
        return [r.id for r in claimed]

    a, b = await asyncio.gather(search(), search())
    assert len(a) == len(b) == 3 and set(a) | set(b) == set(ids)


class Recorder:
    """A round function: records its calls; fails the first ``fail`` calls."""

    def __init__(self, *, fail: int = 0, returns: float | None = None) -> None:
        self.calls = 0
        self.fail = fail
        self.returns = returns
        self.failures: list[float] = []
        self.in_hand: list[str] = []
        self.done: list[str] = []

    async def round(self) -> float | None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError(f"round {self.calls} failed")
        if self.in_hand:
            self.done.append(self.in_hand.pop(0))
            return 0
        return self.returns


async def test_the_loop_runs_when_woken_and_when_its_round_says_so() -> None:
    rec = Recorder(returns=None)
    loop = WorkLoop("test-loop", rec.round)
    loop.start()
    try:
        await eventually(lambda: _true(rec.calls == 1), message="the first round at start")
        loop.wake()
        await eventually(lambda: _true(rec.calls == 2), message="a round per wake-up")
        rec.returns = 0.01  # a timer: rounds come by themselves
        loop.wake()
        await eventually(lambda: _true(rec.calls >= 6), message="rounds on the round's own timer")
    finally:
        await loop.stop()
    assert not loop.running


async def test_a_failed_round_is_retried_after_a_growing_backoff() -> None:
    rec = Recorder(fail=3, returns=None)
    loop = WorkLoop(
        "test-loop",
        rec.round,
        backoff_initial_s=0.01,
        backoff_max_s=0.03,
        on_failure=lambda exc, retry_in: rec.failures.append(retry_in),
    )
    loop.start()
    try:
        await eventually(lambda: _true(rec.calls == 4), message="three failures, then a round that works")
    finally:
        await loop.stop()
    assert rec.failures == [0.01, 0.02, 0.03]


async def test_stopping_drains_what_is_in_hand_and_takes_nothing_new() -> None:
    rec = Recorder(returns=None)
    loop = WorkLoop("test-loop", rec.round, in_hand=lambda: bool(rec.in_hand))
    loop.start()
    await eventually(lambda: _true(rec.calls == 1), message="the first round")
    rec.in_hand[:] = ["a", "b", "c"]
    await loop.stop()
    assert rec.done == ["a", "b", "c"], "what was in hand when the stop came"
    calls = rec.calls
    loop.wake()
    await asyncio.sleep(0)
    assert rec.calls == calls and not loop.running


async def test_stopping_without_work_in_hand_runs_no_further_round() -> None:
    rec = Recorder(returns=None)
    loop = WorkLoop("test-loop", rec.round)
    loop.start()
    await eventually(lambda: _true(rec.calls == 1), message="the first round")
    await loop.stop()
    assert rec.calls == 1


async def _true(value: bool) -> bool:
    assert value
    return True
