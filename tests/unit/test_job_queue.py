"""The database as the job queue, on SQLite and on PostgreSQL: admission under the limits, claims
(tenants in turn), lease expiry, fencing tokens, attempts, cancel requests, release, recovery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from heads import TrainedHead, train_head, utc_now
from service.errors import ResourceExhausted
from service.jobs.model import JobSnapshot, JobState
from service.jobs.queue import Claimed, Ended, JobQueue
from service.jobs.store import JobStore, LeaseLost
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from service.store.schema import HeadRow, JobRow
from tests.support.postgres import database_url
from tests.support.scenario import run

__all__ = ["database_url"]  # the fixture, used by name

LEASE_S = 30.0
PAYLOAD = b"stored request"  # the queue never reads it


class Clock:
    """The time as the replicas see it; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "data", database_url)
    yield database
    database.close()


def _job(tenant: str, job_id: str | None = None) -> JobSnapshot:
    now = utc_now()
    return JobSnapshot(
        job_id=job_id or uuid.uuid4().hex, tenant=tenant, head="h", backbone="b",
        kind="logistic_regression", num_examples=2, state=JobState.QUEUED, stage="queued",
        progress=0.0, created_at=now, updated_at=now,
    )  # fmt: skip


def _queue(db: Database, clock: Clock, owner: str = "replica-a", attempts: int = 3) -> JobQueue:
    return JobQueue(db, owner, LEASE_S, attempts, clock)


async def _admit(store: JobStore, tenant: str, job_id: str | None = None) -> JobSnapshot:
    job = _job(tenant, job_id)
    await store.admit(job, PAYLOAD, max_per_tenant=10, max_total=100)
    return job


async def _claimed(queue: JobQueue) -> Claimed:
    outcome, _active = await queue.claim()
    assert isinstance(outcome, Claimed), outcome
    return outcome


def test_tenants_take_turns_and_each_tenants_jobs_run_in_order(db: Database) -> None:
    """With one worker, the tenant served longest ago (one never served first) goes next: a
    tenant's third job never runs before another tenant's first."""
    store, clock = JobStore(db), Clock()
    queue = _queue(db, clock)

    async def scenario() -> list[str]:
        for job_id, tenant in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"),
                               ("b2", "b")]:  # fmt: skip
            await _admit(store, tenant, job_id)
        order: list[str] = []
        while True:
            clock.advance(1)
            outcome, active = await queue.claim()
            if outcome is None:
                assert active == 0
                return order
            assert isinstance(outcome, Claimed)
            order.append(outcome.snapshot.job_id)
            done = JobSnapshot(**{**outcome.snapshot.__dict__, "state": JobState.SUCCEEDED})
            await store.save(done, outcome.token)  # the job ends: its worker is free

    assert run(scenario()) == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_job_whose_lease_expired_is_taken_over_and_the_old_holder_is_fenced_out(
    db: Database, tmp_path: Path
) -> None:
    """Replica A claims a job and stops renewing (it died, or hangs); past the lease, replica B
    claims it with a new token. A's writes, its heartbeat and its publish are all refused; B
    publishes the one version."""
    store, clock = JobStore(db), Clock()
    a, b = _queue(db, clock, "replica-a"), _queue(db, clock, "replica-b")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (10, 4)), rng.normal(3, 1, (10, 4))]).astype(np.float32)
    trained: TrainedHead = train_head("logistic_regression", x, ["p"] * 10 + ["q"] * 10)
    pool = ThreadPoolExecutor(2)
    registry = HeadRegistry(db, HeadFiles(tmp_path / "heads"), cache_size=2, executor=pool)

    async def publish(job: JobSnapshot, token: int) -> int:
        card = await registry.publish(
            "acme", "h", trained, "b", "f" * 64,
            commit_with=lambda session, version: store.succeed(job, token)(
                trained, session, version
            ),
        )  # fmt: skip
        return card.version

    async def scenario() -> None:
        await _admit(store, "acme")
        held_by_a = await _claimed(a)
        assert (await b.claim())[0] is None  # A's lease holds
        clock.advance(LEASE_S - 1)
        assert (
            await a.keep({held_by_a.snapshot.job_id: held_by_a.token}, renew=True)
        ).lost == set()
        clock.advance(LEASE_S - 1)
        assert (await b.claim())[0] is None  # renewed: still A's
        clock.advance(2)
        taken = await _claimed(b)
        job_id = taken.snapshot.job_id
        assert job_id == held_by_a.snapshot.job_id and taken.token == held_by_a.token + 1

        stale = JobSnapshot(**{**held_by_a.snapshot.__dict__, "progress": 0.7})
        with pytest.raises(LeaseLost):
            await store.save(stale, held_by_a.token)
        kept = await a.keep({job_id: held_by_a.token}, renew=True)
        assert kept.lost == {job_id}
        with pytest.raises(LeaseLost):
            await publish(held_by_a.snapshot, held_by_a.token)
        assert await publish(taken.snapshot, taken.token) == 1
        with pytest.raises(LeaseLost):  # a zombie waking up after B finished: still refused
            await publish(held_by_a.snapshot, held_by_a.token)

        def stored(session: object) -> tuple[JobRow, int]:
            row = session.get(JobRow, job_id)  # type: ignore[attr-defined]
            versions = session.scalar(select(func.count()).select_from(HeadRow))  # type: ignore[attr-defined]
            return row, versions

        row, versions = await db.run(stored)
        assert versions == 1
        assert (row.state, row.version, row.attempts, row.lease_owner) == (
            JobState.SUCCEEDED.value, 1, 2, "replica-b",
        )  # fmt: skip

    try:
        run(scenario())
    finally:
        pool.shutdown()


def test_a_job_claimed_the_most_times_allowed_fails_with_the_reason(db: Database) -> None:
    store, clock = JobStore(db), Clock()
    queue = _queue(db, clock, attempts=2)

    async def scenario() -> None:
        job = await _admit(store, "acme")
        for attempt in (1, 2):
            claimed = await _claimed(queue)
            assert claimed.token == attempt
            clock.advance(LEASE_S + 1)  # its replica died each time
        outcome, active = await queue.claim()
        assert isinstance(outcome, Ended) and active == 0
        ended = outcome.snapshot
        assert (ended.job_id, ended.state) == (job.job_id, JobState.FAILED)
        assert "claimed 2 times" in ended.error
        assert (await store.get("acme", job.job_id)) == ended

    run(scenario())


def test_cancel_requests_end_a_queued_job_at_once_and_reach_the_lease_holder(
    db: Database,
) -> None:
    store, clock = JobStore(db), Clock()
    queue = _queue(db, clock)

    async def scenario() -> None:
        running = await _admit(store, "acme")
        claimed = await _claimed(queue)
        queued = await _admit(store, "acme")
        row, ended = await store.request_cancel("acme", queued.job_id, clock())
        assert ended and row is not None and row.state is JobState.CANCELLED
        assert await store.request_cancel("globex", running.job_id, clock()) == (None, False)
        row, ended = await store.request_cancel("acme", running.job_id, clock())
        assert not ended and row is not None and row.state is JobState.RUNNING
        kept = await queue.keep({running.job_id: claimed.token}, renew=False)
        assert (kept.cancel, kept.lost) == ({running.job_id}, set())
        # Its replica died before stopping it: the next claim ends it instead of running it.
        clock.advance(LEASE_S + 1)
        outcome, _ = await queue.claim()
        assert isinstance(outcome, Ended) and outcome.snapshot.state is JobState.CANCELLED

    run(scenario())


def test_an_ended_job_keeps_no_stored_request(db: Database) -> None:
    """Cancelled while queued, failed by its holder, ended by a claim: each row's payload is
    dropped; a job that may still run keeps its own."""
    store, clock = JobStore(db), Clock()
    queue = _queue(db, clock, attempts=1)

    def payloads(session: Session) -> dict[str, bytes | None]:
        return {
            job_id: payload
            for job_id, payload in session.execute(select(JobRow.job_id, JobRow.payload))
        }

    async def scenario() -> None:
        failed = await _admit(store, "acme")
        claimed = await _claimed(queue)
        ended = replace(claimed.snapshot, state=JobState.FAILED, stage="failed", error="bad")
        await store.save(ended, claimed.token)
        cancelled = await _admit(store, "acme")
        await store.request_cancel("acme", cancelled.job_id, clock())
        exhausted = await _admit(store, "acme")
        await _claimed(queue)
        clock.advance(LEASE_S + 1)  # its replica died; one attempt allowed
        outcome, _ = await queue.claim()
        assert isinstance(outcome, Ended) and outcome.snapshot.job_id == exhausted.job_id
        waiting = await _admit(store, "acme")
        assert db.call(payloads) == {
            failed.job_id: None,
            cancelled.job_id: None,
            exhausted.job_id: None,
            waiting.job_id: PAYLOAD,
        }

    run(scenario())


def test_limits_hold_for_admissions_at_once_from_two_replicas(
    db: Database,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Twelve submissions at once from two replicas' connections, against a total of 5 and 3
    per tenant: exactly that many are admitted (one step: count, then insert)."""
    other = Database(tmp_path / "other", database_url)
    stores = [JobStore(db), JobStore(other)]

    async def admit(index: int) -> bool:
        tenant = "acme" if index % 2 else "globex"
        try:
            await stores[index % 2].admit(_job(tenant), PAYLOAD, max_per_tenant=3, max_total=5)
        except ResourceExhausted as refused:
            assert "this tenant" in str(refused) or "too many" in str(refused)
            return False
        return True

    async def scenario() -> list[bool]:
        return list(await asyncio.gather(*(admit(i) for i in range(12))))

    try:
        admitted = run(scenario())
    finally:
        other.close()
    assert sum(admitted) == 5

    def counts(session: object) -> list[tuple[str, int]]:
        query = select(JobRow.tenant, func.count()).group_by(JobRow.tenant).order_by(JobRow.tenant)
        return [tuple(row) for row in session.execute(query)]  # type: ignore[attr-defined]

    assert sorted(n for _, n in db.call(counts)) == [2, 3]


def test_release_and_recovery_requeue_running_jobs_and_fail_old_ones(db: Database) -> None:
    """Shutdown hands a job back (to run again from the start); at start-up a SQLite process
    re-queues what it left running, and jobs of earlier releases (no stored request) fail."""
    store, clock = JobStore(db), Clock()
    queue = _queue(db, clock)

    async def scenario() -> None:
        first = await _admit(store, "acme")
        claimed = await _claimed(queue)
        assert claimed.snapshot.job_id == first.job_id
        released = await queue.release(first.job_id, claimed.token)
        assert released is not None and (released.state, released.stage) == (
            JobState.QUEUED, "requeued",
        )  # fmt: skip
        assert await queue.release(first.job_id, claimed.token) is None  # not running any more
        again = await _claimed(queue)
        assert (again.snapshot.job_id, again.token) == (first.job_id, claimed.token + 1)
        old = await _admit(store, "acme")
        await db.run(
            lambda s: s.execute(
                update(JobRow).where(JobRow.job_id == old.job_id).values(payload=None)
            )
        )

    run(scenario())
    assert queue.recover(requeue_running=True) == (1, 1)

    async def after() -> None:
        recovered = await _claimed(queue)
        assert (recovered.snapshot.state, recovered.snapshot.stage) == (
            JobState.RUNNING,
            "starting",
        )
        failed = [j for j in await _all(store, "acme") if j.state is JobState.FAILED]
        assert len(failed) == 1 and "restarted" in failed[0].error

    run(after())


async def _all(store: JobStore, tenant: str) -> list[JobSnapshot]:
    ids = await store.db.run(lambda s: list(s.scalars(select(JobRow.job_id))))
    return [job for job_id in ids if (job := await store.get(tenant, job_id)) is not None]
