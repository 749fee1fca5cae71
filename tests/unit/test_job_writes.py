"""Job state writes: every write's outcome is observed; one that raises is logged and counted."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from heads import utc_now
from service.jobs.model import JobSnapshot, JobState
from service.jobs.store import LeaseLost
from service.jobs.writer import JobWriter


def _job(**changes: object) -> JobSnapshot:
    now = utc_now()
    fields: dict[str, object] = dict(
        job_id=uuid.uuid4().hex, tenant="acme", head="h", backbone="b",
        kind="logistic_regression", num_examples=2, state=JobState.RUNNING, stage="fit",
        progress=0.5, created_at=now, updated_at=now,
    )  # fmt: skip
    fields.update(changes)
    return JobSnapshot(**fields)  # type: ignore[arg-type]


class MemoryStore:
    """A job store in memory whose `save` raises a full disk while `failing` is set, and refuses
    every write as another replica's lease while `fenced` is."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSnapshot] = {}
        self.failing = False
        self.fenced = False
        self.saves = 0

    async def save(self, job: JobSnapshot, token: int) -> None:
        self.saves += 1
        if self.failing:
            raise OSError(28, "No space left on device")
        if self.fenced:
            raise LeaseLost(job.job_id)
        self.jobs[job.job_id] = job


def test_every_failed_progress_write_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.failing = True
    writer = JobWriter(store)  # type: ignore[arg-type]

    async def scenario() -> None:
        job = _job()
        writer.progress(job, 1)
        await writer.close(1.0)
        writer.progress(_job(job_id=job.job_id, progress=0.6), 1)
        await writer.close(1.0)

    with caplog.at_level(logging.WARNING, logger="service.jobs.writer"):
        asyncio.run(scenario())
    assert writer.failed_writes == 2
    assert "progress not stored" in caplog.text  # logged once a job: it repeats while it lasts


def test_a_background_write_that_raises_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    writer = JobWriter(MemoryStore())  # type: ignore[arg-type]

    async def failing() -> None:
        raise OSError(28, "No space left on device")

    async def scenario() -> None:
        writer.in_background(failing(), "job j: storing its final state")
        await writer.close(1.0)

    with caplog.at_level(logging.ERROR, logger="service.jobs.writer"):
        asyncio.run(scenario())
    assert writer.failed_writes == 1
    assert "job j: storing its final state failed" in caplog.text


def test_a_write_refused_for_a_lost_lease_is_dropped_not_retried_nor_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once another replica claimed the job, the writer stops writing it: the final state is
    not retried (it would never land), nothing counts as a failure, and the job is reported
    lost so that it stops."""
    store = MemoryStore()
    store.fenced = True
    lost: list[str] = []
    writer = JobWriter(store, on_lost=lost.append)  # type: ignore[arg-type]
    job = _job()

    async def scenario() -> bool:
        writer.progress(job, 1)
        await asyncio.sleep(0.01)  # the progress write is refused first
        stored = await writer.final(_job(job_id=job.job_id, state=JobState.FAILED), 1)
        await writer.close(1.0)
        return stored

    with caplog.at_level(logging.WARNING, logger="service.jobs.writer"):
        assert asyncio.run(scenario())  # over at once: not waiting, not in the background
    assert (writer.failed_writes, writer.backlog, store.saves) == (0, 0, 2)
    assert writer.unstored(job.job_id) is None
    assert lost == [job.job_id, job.job_id]
    assert "another replica claimed it" in caplog.text
