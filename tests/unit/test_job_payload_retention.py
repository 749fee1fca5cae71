"""A job's stored request (its examples), on SQLite and on PostgreSQL: dropped by the job's final
state, or kept for `job_payload_retention_s` and then dropped by the sweep, which replicas may
run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service.jobs.model import JobSnapshot, JobState
from service.jobs.queue import JobQueue
from service.jobs.retention import MAX_SWEEP_S, MIN_SWEEP_S, PayloadSweeper, sweep_interval
from service.jobs.store import JobStore, purge_payloads
from service.store.database import Database
from service.store.schema import JobRow
from tests.support.postgres import database_url
from tests.support.scenario import run
from tests.unit.test_job_queue import LEASE_S, PAYLOAD, Clock, _admit, _claimed

__all__ = ["database_url"]  # the fixture, used by name

RETENTION_S = 60.0


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "data", database_url)
    yield database
    database.close()


def payloads(db: Database) -> dict[str, bytes | None]:
    """Every job's stored request, by job id."""
    return dict(db.call(lambda s: s.execute(select(JobRow.job_id, JobRow.payload)).all()))


def ended(job: JobSnapshot, state: JobState, clock: Clock) -> JobSnapshot:
    return JobSnapshot(**{**job.__dict__, "state": state, "updated_at": clock()})


def test_without_retention_every_way_a_job_ends_drops_its_request(db: Database) -> None:
    """Succeeded or failed (the holder's final write), cancelled while queued (CancelJob), and
    failed at a claim (out of attempts): none keeps the examples."""
    clock = Clock()
    store, queue = JobStore(db), JobQueue(db, "replica-a", LEASE_S, 1, clock)

    async def scenario() -> None:
        for job_id in ("done", "failed"):
            await _admit(store, "acme", job_id)
            claimed = await _claimed(queue)
            state = JobState.SUCCEEDED if job_id == "done" else JobState.FAILED
            await store.save(ended(claimed.snapshot, state, clock), claimed.token)
        await _admit(store, "acme", "cancelled")
        await store.request_cancel("acme", "cancelled", clock())
        await _admit(store, "acme", "out-of-attempts")
        await _claimed(queue)
        clock.advance(LEASE_S + 1)  # its replica died; max_attempts is 1: the claim fails it
        outcome, _ = await queue.claim()
        assert outcome is not None and outcome.snapshot.state is JobState.FAILED

    run(scenario())
    assert payloads(db) == dict.fromkeys(["done", "failed", "cancelled", "out-of-attempts"])


def test_with_retention_an_ended_job_keeps_its_request_until_the_sweep_after_it(
    db: Database,
) -> None:
    clock = Clock()
    store = JobStore(db, keep_payload=True)
    queue = JobQueue(db, "replica-a", LEASE_S, 3, clock, keep_payload=True)
    sweeper = PayloadSweeper(db, RETENTION_S, clock)

    async def scenario() -> None:
        await _admit(store, "acme", "done")
        claimed = await _claimed(queue)
        await store.save(ended(claimed.snapshot, JobState.SUCCEEDED, clock), claimed.token)
        await _admit(store, "acme", "cancelled")  # CancelJob while queued: ended at once
        await store.request_cancel("acme", "cancelled", clock())
        await _admit(store, "acme", "queued")

    run(scenario())
    assert payloads(db) == dict.fromkeys(["done", "cancelled", "queued"], PAYLOAD)
    assert sweeper.sweep_now() == 0
    clock.advance(RETENTION_S / 2)
    assert sweeper.sweep_now() == 0  # within the retention
    clock.advance(RETENTION_S / 2 + 30)  # (CancelJob stamps the real time, a little later)
    assert sweeper.sweep_now() == 2
    # A job that has not ended keeps its request, whatever its age.
    assert payloads(db) == {"done": None, "cancelled": None, "queued": PAYLOAD}


def test_the_sweep_is_idempotent_and_replicas_may_sweep_at_once(db: Database) -> None:
    """Two replicas' sweeps of the same rows, concurrently: each row dropped once, no error."""
    clock = Clock()
    store = JobStore(db, keep_payload=True)
    queue = JobQueue(db, "replica-a", LEASE_S, 3, clock, keep_payload=True)

    async def scenario() -> list[int]:
        for i in range(6):
            await _admit(store, "acme", f"job-{i}")
            claimed = await _claimed(queue)
            await store.save(ended(claimed.snapshot, JobState.SUCCEEDED, clock), claimed.token)
        cutoff = clock() + timedelta(seconds=1)
        return list(
            await asyncio.gather(*(db.run(lambda s: purge_payloads(s, cutoff)) for _ in range(4)))
        )

    counts = run(scenario())
    assert sum(counts) == 6
    assert set(payloads(db).values()) == {None}
    assert db.call(lambda s: purge_payloads(s, Clock()())) == 0


def test_at_start_up_a_retention_turned_off_drops_what_an_earlier_one_kept(db: Database) -> None:
    clock = Clock()
    store = JobStore(db, keep_payload=True)
    queue = JobQueue(db, "replica-a", LEASE_S, 3, clock, keep_payload=True)

    async def scenario() -> None:
        await _admit(store, "acme", "kept")
        claimed = await _claimed(queue)
        await store.save(ended(claimed.snapshot, JobState.SUCCEEDED, clock), claimed.token)

    run(scenario())
    assert payloads(db) == {"kept": PAYLOAD}
    clock.advance(0.001)
    assert PayloadSweeper(db, 0.0, clock).sweep_now() == 1
    assert payloads(db) == {"kept": None}


def test_the_sweep_period_follows_the_retention_within_bounds() -> None:
    assert sweep_interval(0.0) == MIN_SWEEP_S
    assert sweep_interval(2.0) == 1.0
    assert sweep_interval(30 * 86400) == MAX_SWEEP_S
