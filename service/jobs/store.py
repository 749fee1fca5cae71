"""Jobs in the metadata database."""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from heads import utc_now
from service.jobs.model import JobSnapshot, JobState
from service.store.database import Database, as_utc
from service.store.schema import JobRow

ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


def _snapshot(row: JobRow) -> JobSnapshot:
    return JobSnapshot(
        job_id=row.job_id, tenant=row.tenant, head=row.head, backbone=row.backbone,
        kind=row.kind, num_examples=row.num_examples, state=JobState(row.state),
        stage=row.stage, progress=row.progress, error=row.error,
        metrics=json.loads(row.metrics_json), version=row.version,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
    )  # fmt: skip


def _changing_columns(job: JobSnapshot) -> dict[str, object]:
    """The columns a job's progress changes (the rest are fixed when it is created)."""
    return {
        "state": job.state.value, "stage": job.stage, "progress": job.progress,
        "error": job.error, "metrics_json": json.dumps(job.metrics), "version": job.version,
        "updated_at": job.updated_at,
    }  # fmt: skip


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, job: JobSnapshot) -> None:
        def add(session: Session) -> None:
            session.add(
                JobRow(
                    job_id=job.job_id,
                    tenant=job.tenant,
                    head=job.head,
                    backbone=job.backbone,
                    kind=job.kind,
                    num_examples=job.num_examples,
                    created_at=job.created_at,
                    **_changing_columns(job),
                )  # fmt: skip
            )

        await self._db.run(add)

    async def save(self, job: JobSnapshot) -> None:
        """Writes the job's changing fields (callers await it: see `service.jobs.writer`)."""

        def write(session: Session) -> None:
            session.execute(
                update(JobRow).where(JobRow.job_id == job.job_id).values(**_changing_columns(job))
            )

        await self._db.run(write)

    async def get(self, tenant: str, job_id: str) -> JobSnapshot | None:
        """The job if it belongs to `tenant` (another tenant's job is None, like a missing one)."""

        def query(session: Session) -> JobSnapshot | None:
            row = session.get(JobRow, job_id)
            return _snapshot(row) if row is not None and row.tenant == tenant else None

        return await self._db.run(query)

    def fail_interrupted(self, reason: str) -> int:
        """At start-up: no job may stay QUEUED or RUNNING from a previous process."""

        def fail(session: Session) -> int:
            # An UPDATE runs on a cursor, but Session.execute is typed to return a plain Result.
            result = cast(
                "CursorResult[Any]",
                session.execute(
                    update(JobRow)
                    .where(JobRow.state.in_(ACTIVE))
                    .values(
                        state=JobState.FAILED.value,
                        stage="interrupted",
                        error=reason,
                        updated_at=utc_now(),
                    )
                ),
            )
            return int(result.rowcount or 0)

        return self._db.call(fail)
