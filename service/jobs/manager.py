"""The job manager: queues training jobs in the database, runs the ones this replica claims, and
answers for every job, wherever it runs.

Admission (`submit`): the validated request is stored with its job (`service.jobs.payload`, at
most `max_payload_bytes` compressed); a tenant may have `max_jobs_per_tenant` jobs queued or
running and the database `max_jobs_total`, counted and inserted in one step across replicas
(`JobStore.admit`); beyond them, and beyond the tenant's head quotas, TrainHead answers
RESOURCE_EXHAUSTED at once. Running: a replica with workers claims jobs under a lease
(`service.jobs.worker`, `service.jobs.queue`); tenants take turns. A running job is stopped by
CancelJob (on any replica), by its wall-clock timeout, by shutdown or by the loss of its lease,
through its `JobControl`; its worker is released only once its training thread has returned.
On shutdown the jobs this replica runs go back to the queue, to run again from the start here
after a restart or on another replica. Every state write is fenced by the lease and its outcome
observed: awaited, or run by `JobWriter.in_background`; a failure is logged and counted
(`failed_writes`). A job's stored request is dropped when it ends, or `payload_retention_s` later
(`service.jobs.retention`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from heads import TrainingStopped, utc_now
from service import audit, metrics, tracing
from service.backbones.embedder import Embedder
from service.errors import NotFound, ResourceExhausted, Unavailable, shown
from service.jobs.control import StopReason
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.outcomes import client_message, stopped, unreadable_reason
from service.jobs.payload import PayloadError, decode, encode
from service.jobs.pipeline import JobCancelled, run_training
from service.jobs.queue import Clock, JobQueue
from service.jobs.retention import PayloadSweeper
from service.jobs.store import JobStore, LeaseLost
from service.jobs.validation import TrainingLimits
from service.jobs.worker import Held, Worker, WorkerSettings
from service.jobs.writer import JobWriter
from service.store.database import Database
from service.store.registry import HeadRegistry

log = logging.getLogger(__name__)

#: How long shutdown waits for final states to be stored.
CLOSE_WRITES_S = 5.0
#: How long CancelJob waits for another replica to stop the job before it answers its state.
CANCEL_WAIT_S = 10.0
#: How often CancelJob re-reads a job that another replica is stopping.
CANCEL_POLL_S = 0.1
SHUTTING_DOWN = (
    "this server is shutting down; the job is not affected: watch it again (another replica, "
    "or this one after its restart, runs it)"
)


@dataclass(frozen=True)
class JobLimits:
    """The manager's settings (see `service.config.Settings` for each)."""

    workers: int
    max_jobs_per_tenant: int
    max_jobs_total: int
    embed_chunk: int
    timeout_s: float = 1800.0
    training: TrainingLimits = field(default_factory=TrainingLimits)
    lease_s: float = 30.0
    max_attempts: int = 3
    max_payload_bytes: int = 64 * 2**20
    #: How often an idle replica looks for jobs, a heartbeat checks for cancels, and a watcher
    #: of a job running elsewhere re-reads it (at half of this).
    poll_s: float = 0.5
    #: How long an ended job keeps its stored request (0: dropped by its final state).
    payload_retention_s: float = 0.0


def replica_id() -> str:
    """This process's lease owner id: host, pid and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


class JobManager:
    """Training jobs of every replica on one database.

    Args:
        db: The metadata database (the queue).
        embedder: Embeds the examples.
        registry: Publishes the heads.
        executor: The training pool; None on a replica without workers.
        limits: The settings.
        clock: The time (UTC) of leases.
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        registry: HeadRegistry,
        executor: Executor | None,
        limits: JobLimits,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        keep_payload = limits.payload_retention_s > 0
        self._store = JobStore(db, keep_payload)
        self._writer = JobWriter(self._store, on_lost=self._lost)
        self._embedder = embedder
        self._registry = registry
        self._executor = executor
        self._limits = limits
        self._queue = JobQueue(
            db, replica_id(), limits.lease_s, limits.max_attempts, clock, keep_payload
        )
        self._sweeper = PayloadSweeper(db, limits.payload_retention_s, clock)
        self._worker = Worker(
            self._queue,
            WorkerSettings(limits.workers if executor is not None else 0, limits.lease_s,
                           limits.poll_s),
            run=self._run, ended=self._ended, counted=metrics.JOBS_ACTIVE.set,
            writing=lambda job_id: self._writer.unstored(job_id) is not None,
        )  # fmt: skip
        # Requests are encoded one at a time: a bounded amount of memory and CPU, off the loop.
        self._payloads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-payload")
        self._watchers: dict[str, set[asyncio.Queue[JobSnapshot | None]]] = defaultdict(set)
        self._watches_ended = False

    @property
    def failed_writes(self) -> int:
        """Job state writes that raised since start-up (each was logged)."""
        return self._writer.failed_writes

    @property
    def training_limits(self) -> TrainingLimits:
        """What TrainHead requests may ask for; pass to `validate_training_request`."""
        return self._limits.training

    def recover(self) -> None:
        """At start-up: jobs of earlier releases (no stored request) left queued or running are
        failed, clearly; on SQLite, whose file only this process uses, jobs left running go back
        to the queue to run again (on PostgreSQL their leases expire by themselves)."""
        failed, requeued = self._queue.recover(requeue_running=not self._db.is_postgres)
        if failed:
            log.warning("failed %d job(s) of an earlier release interrupted by a restart", failed)
        if requeued:
            log.warning("re-queued %d job(s) interrupted by a restart; they run again", requeued)
        self._sweeper.sweep_now()

    def start(self) -> None:
        """Starts claiming jobs (on a replica with workers): call once backbones are ready.
        Every replica sweeps ended jobs' requests past their retention."""
        self._worker.start()
        self._sweeper.start()

    async def submit(self, tenant: str, request: TrainingRequest) -> JobSnapshot:
        """Admits a request that `validate_training_request` passed (with `training_limits`) as a
        queued job.

        Raises:
            ResourceExhausted: Over a job limit, the stored request's size or a head quota; or
                the job cannot be stored (a full disk): then nothing is queued.
        """
        await self._registry.check_quota(tenant, request.head)
        loop = asyncio.get_running_loop()
        payload = await loop.run_in_executor(self._payloads, encode, request)
        if len(payload) > self._limits.max_payload_bytes:
            raise ResourceExhausted(
                f"this training request takes {len(payload) / 2**20:.1f} MiB stored "
                f"(compressed), over this server's limit of "
                f"{self._limits.max_payload_bytes / 2**20:g} MiB (TRANSFERD_MAX_JOB_PAYLOAD_MB); "
                "train on fewer or smaller examples"
            )
        now = utc_now()
        job = JobSnapshot(
            job_id=uuid.uuid4().hex, tenant=tenant, head=request.head,
            backbone=request.backbone, kind=request.kind,
            num_examples=len(request.inputs), state=JobState.QUEUED, stage="queued",
            progress=0.0, created_at=now, updated_at=now,
        )  # fmt: skip
        limits = self._limits
        active = await self._store.admit(
            job, payload, limits.max_jobs_per_tenant, limits.max_jobs_total
        )
        metrics.JOBS_ACTIVE.set(active)
        # The job runs in a trace of its own (`_run`), found by this id from TrainHead's span.
        tracing.annotate("transferd.job_id", job.job_id)
        self._worker.wake()
        return job

    async def get(self, tenant: str, job_id: str) -> JobSnapshot:
        held = self._worker.held(job_id)
        if held is not None and held.snapshot.tenant == tenant:
            return held.snapshot
        unstored = self._writer.unstored(job_id)
        if unstored is not None and unstored.tenant == tenant:
            return unstored
        stored = await self._store.get(tenant, job_id) if job_id else None
        if stored is None:
            raise NotFound(f"job {shown(job_id)} not found")
        return stored

    async def cancel(self, tenant: str, job_id: str) -> JobSnapshot:
        """Stops the job and answers once its work has stopped (a running training thread
        stops at its next checkpoint, well within a second); a job another replica runs is
        stopped by that replica, waited for up to `CANCEL_WAIT_S`."""
        job = await self.get(tenant, job_id)
        if job.state.terminal:
            return job
        row, ended = await self._store.request_cancel(tenant, job_id, utc_now())
        if row is None:
            raise NotFound(f"job {shown(job_id)} not found")
        if ended:  # nobody ran it: cancelled in the database at once
            self._ended(row)
            await self._recount()
            return row
        held = self._worker.held(job_id)
        if held is not None:
            if self._worker.stop(job_id, StopReason.CANCELLED) and held.task is not None:
                asked = time.monotonic()
                await asyncio.gather(held.task, return_exceptions=True)
                log.info("job %s: cancelled; stopped in %.2f s", job_id, time.monotonic() - asked)
            return await self.get(tenant, job_id)  # else too late: it is publishing
        # Another replica runs it: its heartbeat sees the request and stops it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT_S
        while not row.state.terminal and loop.time() < deadline:
            await asyncio.sleep(CANCEL_POLL_S)
            row = await self.get(tenant, job_id)
        return row

    async def stop_tenant(self, tenant: str) -> None:
        """Stops the jobs of a deleted tenant that run here, writing nothing (their rows are
        gone), and waits until their work has stopped: none publishes afterwards."""
        tasks = []
        for job_id in self._worker.held_ids():
            held = self._worker.held(job_id)
            if held is not None and held.snapshot.tenant == tenant:
                self._worker.stop(job_id, StopReason.LEASE_LOST)
                if held.task is not None:
                    tasks.append(held.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def watch(self, tenant: str, job_id: str) -> AsyncIterator[JobSnapshot]:
        """The job now, then after every change, until it is terminal. Changes of a job this
        replica runs arrive at once; one running elsewhere is re-read every half `poll_s`.

        Raises:
            Unavailable: this replica shuts down before the job ends (watch it again).
        """
        queue: asyncio.Queue[JobSnapshot | None] = asyncio.Queue()
        self._watchers[job_id].add(queue)  # subscribe first: no change falls between
        try:
            job = await self.get(tenant, job_id)
            yield job
            while not job.state.terminal:
                if self._watches_ended and queue.empty():  # watching began after `close`
                    raise Unavailable(SHUTTING_DOWN)
                try:
                    changed = await asyncio.wait_for(queue.get(), self._limits.poll_s / 2)
                except TimeoutError:
                    changed = await self.get(tenant, job_id)
                if changed is None:
                    raise Unavailable(SHUTTING_DOWN)
                # Older than what was sent: a read that raced a local change (replicas' clocks
                # may differ a little, so a final state is always news).
                if changed != job and (
                    changed.state.terminal or changed.updated_at >= job.updated_at
                ):
                    job = changed
                    yield job
        finally:
            self._watchers[job_id].discard(queue)
            if not self._watchers[job_id]:
                del self._watchers[job_id]

    async def close(self) -> None:
        """On shutdown: claims no more; the jobs running here go back to the queue; watch
        streams end (UNAVAILABLE: watch again elsewhere)."""
        await self._sweeper.close()
        await self._worker.close()
        # After the jobs' last states: a watcher sees its job back in the queue, then the end.
        self._watches_ended = True
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)
        await self._writer.close(CLOSE_WRITES_S)
        self._payloads.shutdown(wait=False)

    def _tell(self, job: JobSnapshot) -> None:
        for queue in self._watchers.get(job.job_id, ()):
            queue.put_nowait(job)

    def _ended(self, job: JobSnapshot) -> None:
        """A job ended here without running (cancelled while queued, out of attempts)."""
        self._tell(job)
        self._count(job)

    def _count(self, job: JobSnapshot) -> None:
        metrics.JOBS_FINISHED.labels(state=job.state.value).inc()
        seconds = (job.updated_at - job.created_at).total_seconds()
        metrics.JOB_DURATION.labels(state=job.state.value).observe(seconds)

    async def _recount(self) -> None:
        """The active-jobs gauge, read again once a job has ended here (claims read it too)."""
        try:
            metrics.JOBS_ACTIVE.set(await self._store.active())
        except Exception as error:  # a gauge must not fail the job's end; the next claim fixes it
            log.debug("could not count active jobs: %s", error)

    def _lost(self, job_id: str) -> None:
        """A fenced write was refused: another replica holds the job's lease now."""
        self._worker.lost(job_id)

    def _report(self, held: Held, stage: str, progress: float) -> None:
        if held.ended or held.snapshot.state.terminal:
            return
        progress = round(max(progress, held.snapshot.progress), 4)
        held.snapshot = replace(held.snapshot, stage=stage, progress=progress, updated_at=utc_now())
        self._writer.progress(held.snapshot, held.token)
        self._tell(held.snapshot)

    def _expire(self, job_id: str) -> None:
        if self._worker.stop(job_id, StopReason.TIMED_OUT):
            log.warning(
                "job %s: over its %g s timeout; stopping it", job_id, self._limits.timeout_s
            )

    async def _run(self, held: Held) -> None:
        """Runs a claimed job to its end (the `Worker` calls it as the job's task)."""
        held.started = True
        assert self._executor is not None  # a replica without workers claims nothing
        job_id, tenant = held.job_id, held.snapshot.tenant
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._limits.timeout_s, self._expire, job_id)
        self._tell(held.snapshot)
        outcome: dict[str, Any] | None = None
        reason = StopReason.SHUTDOWN  # why it stopped, when there is no outcome
        try:
            request = await loop.run_in_executor(self._executor, decode, held.claimed.payload)
            if held.control.is_set():
                raise JobCancelled()
            success = self._store.succeed(held.snapshot, held.token)
            with tracing.root_span("job", _job_attributes(held.snapshot)):
                card = await run_training(
                    tenant, request, self._embedder, self._registry, self._executor,
                    self._limits.embed_chunk,
                    report=lambda stage, progress: self._report(held, stage, progress),
                    control=held.control,
                    commit_with=success,
                )  # fmt: skip
            assert success.stored is not None and success.stored.version == card.version
            outcome = dict(success.stored.__dict__)
            audit.record(
                "head.publish", tenant=tenant, head=card.name, version=card.version,
                job_id=job_id, backbone=card.backbone,
            )  # fmt: skip
        except LeaseLost:  # the publish was refused: another replica claimed the job
            reason = StopReason.LEASE_LOST
        except (asyncio.CancelledError, JobCancelled, TrainingStopped):
            # Cancelled without a reason: the event loop is ending (as good as a shutdown).
            reason = held.control.reason or StopReason.SHUTDOWN
        except PayloadError as error:
            outcome = dict(
                state=JobState.FAILED, stage="failed", error=unreadable_reason(str(error))
            )
        except Exception as error:
            message = client_message(error)
            if message is None:
                log.exception("job %s failed", job_id)
                message = "training failed because of an internal error; the server log has details"
            outcome = dict(state=JobState.FAILED, stage="failed", error=message)
        finally:
            timer.cancel()
            self._worker.release(held)  # run_training has returned: so has its training thread
        if outcome is None:
            if reason is StopReason.LEASE_LOST:
                self._worker.forget(job_id)  # its state is the other replica's to write
                log.warning("job %s: stopped; another replica runs it now", job_id)
                return
            if reason is StopReason.SHUTDOWN:
                await self._requeue(held)
                return
            outcome = stopped(reason, self._limits.timeout_s)
        await self._finish(held, outcome)

    async def _finish(self, held: Held, outcome: dict[str, Any]) -> None:
        """Makes the job final: stored (retried in the background if the store fails; a success
        was stored with its head) before watchers hear of it, or after a bounded wait."""
        published = outcome.get("state") is JobState.SUCCEEDED
        job = held.snapshot = replace(held.snapshot, **{"updated_at": utc_now(), **outcome})
        if not published:
            await self._writer.final(job, held.token)
        self._tell(job)
        self._count(job)
        await self._recount()

    async def _requeue(self, held: Held) -> None:
        """Shutdown stopped the job: back to the queue, to run again from the start."""
        try:
            requeued = await self._queue.release(held.job_id, held.token)
        except Exception as error:  # its lease expires (or a restart re-queues it) instead
            self._writer.failed(f"job {held.job_id}: handing it back to the queue", error)
            return
        if requeued is not None:
            held.snapshot = requeued
            self._tell(requeued)
            log.info("job %s: stopped by shutdown; back in the queue", held.job_id)


def _job_attributes(job: JobSnapshot) -> tracing.Attributes:
    """What a training job's span says of it: ids, names and counts, never its examples."""
    if not tracing.enabled():
        return {}
    return {
        tracing.TENANT: job.tenant,
        "transferd.job_id": job.job_id,
        "transferd.head": job.head,
        "transferd.backbone": job.backbone,
        "transferd.head_kind": job.kind,
        "transferd.examples": job.num_examples,
    }
