"""The database as the job queue: claims under a lease, the heartbeat, release and recovery.

A claim takes one job in one transaction: a QUEUED job, or a RUNNING one whose lease expired (its
replica died). Tenants take turns: the tenant whose last claim is oldest (one never served
first) goes next, then its oldest job. ``FOR UPDATE SKIP LOCKED`` lets replicas claim at the same
time without waiting on each other (SQLite ignores it: one process owns the file). Every claim
raises the job's fencing token (`lease_token`), so the replica that held it before can no longer
write (`service.jobs.store.fenced`). Times are the replicas' clocks (UTC); a lease of tens of
seconds tolerates the skew of synchronised clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from heads import utc_now
from service.jobs.model import JobSnapshot, JobState
from service.jobs.outcomes import CANCEL_REASON, REQUEUED, RESTART_REASON, attempts_reason
from service.jobs.store import ACTIVE, count_active, ended, fenced, rowcount, snapshot
from service.store.database import Database
from service.store.schema import JobRow

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Claimed:
    """A job this replica now runs: RUNNING under the lease of `token`."""

    snapshot: JobSnapshot
    token: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Ended:
    """A job the claim ended instead of running it (cancelled meanwhile, or out of attempts)."""

    snapshot: JobSnapshot


@dataclass(frozen=True)
class Kept:
    """What the heartbeat found about the leases it keeps."""

    lost: frozenset[str]  # claimed again by another replica, or ended there
    cancel: frozenset[str]  # CancelJob asked for them (on any replica)


class JobQueue:
    """Claims, keeps and releases leases on jobs for one replica.

    Args:
        db: The metadata database.
        owner: This replica's id (`lease_owner`).
        lease_s: How long a claim lasts without renewal.
        max_attempts: Claims a job may have; the next one fails it instead.
        clock: The time (UTC).
        keep_payload: A job ended here keeps its stored request (see `JobStore`).
    """

    def __init__(
        self,
        db: Database,
        owner: str,
        lease_s: float,
        max_attempts: int,
        clock: Clock = utc_now,
        keep_payload: bool = False,
    ) -> None:
        self._db = db
        self._owner = owner
        self._lease = timedelta(seconds=lease_s)
        self._max_attempts = max_attempts
        self._clock = clock
        self._ended_columns = ended(keep_payload)

    async def claim(self, exclude: Collection[str] = ()) -> tuple[Claimed | Ended | None, int]:
        """Claims the next job (never one of `exclude`: this replica's own).

        Returns:
            What was claimed (or ended, or None when nothing waits), and the jobs queued or
            running in the database after.
        """

        def work(session: Session) -> tuple[Claimed | Ended | None, int]:
            return self._claim(session, exclude), count_active(session)

        return await self._db.run(work)

    def _claim(self, session: Session, exclude: Collection[str]) -> Claimed | Ended | None:
        now = self._clock()
        served = aliased(JobRow)
        last_served = (
            select(func.max(served.claimed_at))
            .where(served.tenant == JobRow.tenant)
            .correlate(JobRow)
            .scalar_subquery()
        )
        query = (
            select(JobRow)
            .where(
                or_(
                    JobRow.state == JobState.QUEUED.value,
                    and_(JobRow.state == JobState.RUNNING.value, JobRow.lease_expires_at < now),
                )
            )
            .order_by(last_served.asc().nulls_first(), JobRow.created_at, JobRow.job_id)
            .limit(1)
            .with_for_update(skip_locked=True, of=JobRow)
        )
        if exclude:
            query = query.where(JobRow.job_id.not_in(list(exclude)))
        row = session.scalars(query).first()
        if row is None:
            return None
        row.updated_at = now
        row.lease_expires_at = None
        if row.cancel_requested:
            row.state, row.stage, row.error = JobState.CANCELLED.value, "cancelled", CANCEL_REASON
            return self._ended(row)
        if row.payload is None:  # queued by a release that kept requests in memory only
            row.state, row.stage, row.error = JobState.FAILED.value, "interrupted", RESTART_REASON
            return self._ended(row)
        if row.attempts >= self._max_attempts:
            row.state, row.stage = JobState.FAILED.value, "interrupted"
            row.error = attempts_reason(row.attempts)
            return self._ended(row)
        # A job taken over runs from the start: its earlier progress and results are dropped.
        row.state, row.stage, row.progress, row.error = JobState.RUNNING.value, "starting", 0.0, ""
        row.metrics_json, row.version = "{}", 0
        row.lease_owner = self._owner
        row.lease_expires_at = now + self._lease
        row.lease_token += 1
        row.attempts += 1
        row.claimed_at = now
        session.flush()
        return Claimed(snapshot(row), row.lease_token, row.payload)

    def _ended(self, row: JobRow) -> Ended:
        for column, value in self._ended_columns.items():
            setattr(row, column, value)
        return Ended(snapshot(row))

    async def keep(self, held: Mapping[str, int], renew: bool) -> Kept:
        """The heartbeat: which of the `held` leases (job id → token) are lost and which jobs
        were asked to cancel; with `renew`, the leases still held are extended."""
        if not held:
            return Kept(frozenset(), frozenset())

        def work(session: Session) -> Kept:
            rows = session.execute(
                select(JobRow.job_id, JobRow.lease_token, JobRow.state, JobRow.cancel_requested)
                .where(JobRow.job_id.in_(list(held)))
            ).all()  # fmt: skip
            ours = {
                job_id
                for job_id, token, state, _ in rows
                if token == held[job_id] and state == JobState.RUNNING.value
            }
            cancel = {job_id for job_id, _, _, cancelled in rows if cancelled and job_id in ours}
            if renew:
                expires = self._clock() + self._lease
                for job_id in list(ours):
                    statement = (
                        update(JobRow)
                        .where(fenced(job_id, held[job_id]))
                        .values(lease_expires_at=expires)
                    )
                    if rowcount(session, statement) == 0:  # claimed between the two statements
                        ours.discard(job_id)
            return Kept(frozenset(set(held) - ours), frozenset(cancel & ours))

        return await self._db.run(work)

    async def release(self, job_id: str, token: int) -> JobSnapshot | None:
        """Hands a job this replica stopped (shutdown) back to the queue, to run again from the
        start on any replica; None when the lease was lost meanwhile."""

        def work(session: Session) -> JobSnapshot | None:
            statement = (
                update(JobRow)
                .where(fenced(job_id, token))
                .values(
                    state=JobState.QUEUED.value,
                    stage=REQUEUED,
                    progress=0.0,
                    updated_at=self._clock(),
                    lease_owner=None,
                    lease_expires_at=None,
                )  # fmt: skip
            )
            if rowcount(session, statement) == 0:
                return None
            row = session.get(JobRow, job_id, populate_existing=True)
            return snapshot(row) if row is not None else None

        return await self._db.run(work)

    def recover(self, requeue_running: bool) -> tuple[int, int]:
        """At start-up: jobs of earlier releases (no stored request) that were left queued or
        running are FAILED; with `requeue_running` (SQLite: this process owns the file, so no
        other runs them), running jobs go back to the queue to run again.

        Returns:
            (jobs failed, jobs re-queued).
        """

        def work(session: Session) -> tuple[int, int]:
            now = self._clock()
            failed = rowcount(
                session,
                update(JobRow)
                .where(JobRow.state.in_(ACTIVE), JobRow.payload.is_(None))
                .values(
                    state=JobState.FAILED.value,
                    stage="interrupted",
                    error=RESTART_REASON,
                    updated_at=now,
                    lease_expires_at=None,
                ),  # fmt: skip
            )
            requeued = 0
            if requeue_running:
                requeued = rowcount(
                    session,
                    update(JobRow)
                    .where(JobRow.state == JobState.RUNNING.value)
                    .values(
                        state=JobState.QUEUED.value,
                        stage=REQUEUED,
                        progress=0.0,
                        updated_at=now,
                        lease_owner=None,
                        lease_expires_at=None,
                    ),  # fmt: skip
                )
            return failed, requeued

        return self._db.call(work)
