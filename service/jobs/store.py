"""A job's row: created under the job limits, read tenant-scoped, written by its lease holder only.

Every write of the replica running a job is fenced: it carries the lease token of its claim
(``WHERE lease_token = ? AND state = 'running'``), so once another replica has claimed the job
again (or it ended elsewhere) the write matches no row and raises `LeaseLost`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    and_,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from heads import TrainedHead, TransferReport, utc_now
from service.errors import ResourceExhausted
from service.jobs.model import JobSnapshot, JobState
from service.jobs.outcomes import CANCEL_REASON
from service.store.database import Database, as_utc
from service.store.schema import JobRow

ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
#: PostgreSQL: the transaction-level advisory lock that makes job admission (count, then insert)
#: one step across replicas. Any fixed number other than the migrations' lock.
ADMISSION_LOCK_ID = 0x7472616E736A6F62  # "transjob"


class LeaseLost(Exception):
    """A fenced write matched no row: the job was claimed again by another replica (or ended
    there), so this replica must stop it and write nothing more about it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id}: its lease was taken over; this replica's write refused")
        self.job_id = job_id


def snapshot(row: JobRow) -> JobSnapshot:
    return JobSnapshot(
        job_id=row.job_id, tenant=row.tenant, head=row.head, backbone=row.backbone,
        kind=row.kind, num_examples=row.num_examples, state=JobState(row.state),
        stage=row.stage, progress=row.progress, error=row.error,
        metrics=json.loads(row.metrics_json), version=row.version,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
        transfer=(
            None if row.transfer_json is None
            else TransferReport.model_validate_json(row.transfer_json)
        ),
    )  # fmt: skip


def changing_columns(job: JobSnapshot) -> dict[str, Any]:
    """The columns a job's progress changes (the rest are fixed when it is created)."""
    return {
        "state": job.state.value, "stage": job.stage, "progress": job.progress,
        "error": job.error, "metrics_json": json.dumps(job.metrics), "version": job.version,
        "updated_at": job.updated_at,
        "transfer_json": None if job.transfer is None else job.transfer.model_dump_json(),
    }  # fmt: skip


#: What a job's final state clears: its lease, and its stored request (the examples, up to
#: `max_job_payload_mb` each): only a queued or running job may run again, so an ended job's
#: request would be dead weight in the database forever, and the tenant's data kept past its use.
ENDED: dict[str, Any] = {"lease_expires_at": None, "payload": None}
#: What a final state clears when `job_payload_retention_s` keeps the examples a while: the lease
#: only; `purge_payloads` drops the request once the retention has passed.
ENDED_KEEPING_PAYLOAD: dict[str, Any] = {"lease_expires_at": None}


def ended(keep_payload: bool) -> dict[str, Any]:
    """The columns a final state sets: `ENDED`, or `ENDED_KEEPING_PAYLOAD` under a retention."""
    return ENDED_KEEPING_PAYLOAD if keep_payload else ENDED


def purge_payloads(session: Session, ended_before: datetime) -> int:
    """Drops the stored request of every job that ended before `ended_before` (a final state is
    the row's last write, so `updated_at` is when it ended).

    One UPDATE whose WHERE no longer matches a purged row: replicas sweeping the same database
    at once neither conflict nor count a row twice.

    Returns:
        The jobs whose request was dropped.
    """
    return rowcount(
        session,
        update(JobRow)
        .where(
            JobRow.state.not_in(ACTIVE),
            JobRow.payload.is_not(None),
            JobRow.updated_at < ended_before,
        )
        .values(payload=None)
        .execution_options(synchronize_session=False),
    )


def fenced(job_id: str, token: int) -> ColumnElement[bool]:
    """The job, still running under the lease of `token`."""
    return and_(
        JobRow.job_id == job_id,
        JobRow.lease_token == token,
        JobRow.state == JobState.RUNNING.value,
    )


def count_active(session: Session) -> int:
    """Jobs queued or running, of every replica."""
    found = session.scalar(select(func.count()).select_from(JobRow).where(JobRow.state.in_(ACTIVE)))
    return int(found or 0)


def rowcount(session: Session, statement: Executable) -> int:
    """Rows an UPDATE matched (it runs on a cursor; Session.execute is typed as a plain Result)."""
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount or 0)


class JobStore:
    """Job rows.

    Args:
        db: The metadata database.
        keep_payload: Keep the stored request when a job ends (`job_payload_retention_s` > 0;
            `purge_payloads` drops it later); else a final state drops it.
    """

    def __init__(self, db: Database, keep_payload: bool = False) -> None:
        self.db = db
        self._ended = ended(keep_payload)

    async def admit(
        self, job: JobSnapshot, payload: bytes, max_per_tenant: int, max_total: int
    ) -> int:
        """Inserts a queued job if the tenant and the database are under their limits of jobs
        queued or running; counting and inserting are one step across replicas.

        Returns:
            The jobs queued or running, this one included.

        Raises:
            ResourceExhausted: over a limit (nothing is inserted).
        """

        def insert(session: Session) -> int:
            if self.db.is_postgres:  # SQLite: its single database thread serialises already
                session.execute(select(func.pg_advisory_xact_lock(ADMISSION_LOCK_ID)))
            total, mine = session.execute(
                select(func.count(), func.sum(case((JobRow.tenant == job.tenant, 1), else_=0)))
                .select_from(JobRow)
                .where(JobRow.state.in_(ACTIVE))
            ).one()
            if int(mine or 0) >= max_per_tenant:
                raise ResourceExhausted(
                    f"this tenant already has {max_per_tenant} training jobs queued or running; "
                    "wait for one to finish"
                )
            if int(total or 0) >= max_total:
                raise ResourceExhausted("the server has too many training jobs; retry later")
            session.add(
                JobRow(
                    job_id=job.job_id,
                    tenant=job.tenant,
                    head=job.head,
                    backbone=job.backbone,
                    kind=job.kind,
                    num_examples=job.num_examples,
                    created_at=job.created_at,
                    payload=payload,
                    **changing_columns(job),
                )  # fmt: skip
            )
            return int(total or 0) + 1

        return await self.db.run(insert)

    async def active(self) -> int:
        """Jobs queued or running, of every replica."""
        return await self.db.run(count_active)

    async def get(self, tenant: str, job_id: str) -> JobSnapshot | None:
        """The job if it belongs to `tenant` (another tenant's job is None, like a missing one)."""

        def query(session: Session) -> JobSnapshot | None:
            row = session.get(JobRow, job_id)
            return snapshot(row) if row is not None and row.tenant == tenant else None

        return await self.db.run(query)

    async def save(self, job: JobSnapshot, token: int) -> None:
        """Writes the job's changing fields under the lease of `token` (callers await it: see
        `service.jobs.writer`). A final state ends the lease and drops the stored request (`ENDED`;
        under a retention, `purge_payloads` drops it later).

        Raises:
            LeaseLost: the job is no longer this lease's.
        """
        values = changing_columns(job)
        if job.state.terminal:
            values.update(self._ended)

        def write(session: Session) -> None:
            statement = update(JobRow).where(fenced(job.job_id, token)).values(**values)
            if rowcount(session, statement) == 0:
                raise LeaseLost(job.job_id)

        await self.db.run(write)

    def succeed(self, job: JobSnapshot, token: int) -> Success:
        """What publishing the job's head runs in its transaction (see `Success`)."""
        return Success(job, token, self._ended)

    async def request_cancel(
        self, tenant: str, job_id: str, now: datetime
    ) -> tuple[JobSnapshot | None, bool]:
        """Marks the job to be cancelled, for whichever replica runs it; a job nobody runs (queued,
        or its lease expired) is CANCELLED at once.

        Returns:
            The job's row after (None when it is not the tenant's), and whether this call
            cancelled it.
        """

        def mark(session: Session) -> tuple[JobSnapshot | None, bool]:
            mine = and_(JobRow.job_id == job_id, JobRow.tenant == tenant)
            session.execute(
                update(JobRow).where(mine, JobRow.state.in_(ACTIVE)).values(cancel_requested=True)
            )
            nobody_runs_it = or_(
                JobRow.state == JobState.QUEUED.value,
                and_(JobRow.state == JobState.RUNNING.value, JobRow.lease_expires_at < now),
            )
            ended = rowcount(
                session,
                update(JobRow)
                .where(mine, nobody_runs_it)
                .values(
                    state=JobState.CANCELLED.value,
                    stage="cancelled",
                    error=CANCEL_REASON,
                    updated_at=utc_now(),
                    **self._ended,
                ),  # fmt: skip
            )
            row = session.get(JobRow, job_id, populate_existing=True)
            found = snapshot(row) if row is not None and row.tenant == tenant else None
            return found, ended > 0

        return await self.db.run(mark)


class Success:
    """Run by `run_training` in the transaction that publishes the job's head: the job is stored
    SUCCEEDED with the version published and the head's metrics, under the lease of `token`; a
    stale token raises `LeaseLost`, so nothing is published. `stored` is then what was stored.
    `ended_columns` is what the final state clears besides (`ended`).
    """

    def __init__(
        self, job: JobSnapshot, token: int, ended_columns: dict[str, Any] | None = None
    ) -> None:
        self._job = job
        self._token = token
        self._ended = ENDED if ended_columns is None else ended_columns
        self.stored: JobSnapshot | None = None

    def __call__(self, trained: TrainedHead, session: Session, version: int) -> None:
        done = replace(
            self._job, state=JobState.SUCCEEDED, stage="done", progress=1.0, error="",
            version=version, metrics=dict(trained.summary.metrics), updated_at=utc_now(),
            transfer=trained.summary.transfer,
        )  # fmt: skip
        statement = (
            update(JobRow)
            .where(fenced(done.job_id, self._token))
            .values(**changing_columns(done), **self._ended)
        )
        if rowcount(session, statement) == 0:
            raise LeaseLost(done.job_id)
        self.stored = done
