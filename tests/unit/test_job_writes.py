"""Job state writes: every write's outcome is observed; one that raises is logged and counted."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from heads import utc_now
from service.backbones.inputs import TextInput
from service.jobs.manager import JobLimits, JobManager
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.writer import JobWriter

REQUEST = TrainingRequest(
    head="h", backbone="b", kind="logistic_regression",
    inputs=[TextInput("x"), TextInput("y")], targets=["a", "b"], params={},
    validation_fraction=0.2,
)  # fmt: skip


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
    """A job store in memory whose `save` raises while `failing` is set."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSnapshot] = {}
        self.failing = False

    async def insert(self, job: JobSnapshot) -> None:
        self.jobs[job.job_id] = job

    async def save(self, job: JobSnapshot) -> None:
        if self.failing:
            raise OSError(28, "No space left on device")
        self.jobs[job.job_id] = job

    async def get(self, tenant: str, job_id: str) -> JobSnapshot | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def fail_interrupted(self, reason: str) -> int:
        return 0


class OpenRegistry:
    async def check_quota(self, tenant: str, head: str) -> None:
        return None


def test_every_failed_progress_write_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.failing = True
    writer = JobWriter(store)  # type: ignore[arg-type]

    async def scenario() -> None:
        job = _job()
        writer.progress(job)
        await writer.close(1.0)
        writer.progress(_job(job_id=job.job_id, progress=0.6))
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


def test_the_final_write_of_a_job_cancelled_before_it_ran_is_reported_not_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A job cancelled before its task began is ended from a done-callback, by a write nobody
    awaits: when that write raises, the failure is logged and counted."""

    async def final_that_raises(self: JobWriter, job: JobSnapshot) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(JobWriter, "final", final_that_raises)
    limits = JobLimits(workers=1, max_jobs_per_tenant=4, max_jobs_total=4, embed_chunk=8)
    manager = JobManager(MemoryStore(), None, OpenRegistry(), None, limits)  # type: ignore[arg-type]

    async def scenario() -> None:
        job = await manager.submit("acme", REQUEST)  # given a worker: its task is not started
        await manager.cancel("acme", job.job_id)
        await manager.close()

    with caplog.at_level(logging.ERROR, logger="service.jobs.writer"):
        asyncio.run(scenario())
    assert manager.failed_writes == 1
    assert "storing its final state failed" in caplog.text
    assert "No space left on device" in caplog.text
