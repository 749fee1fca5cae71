"""The job manager: admits training jobs, runs them fairly on a bounded pool, lets clients watch.

Admission: a tenant may have `max_jobs_per_tenant` jobs queued or running, the server
`max_jobs_total`, counted in memory (this process is the only writer, and `recover` fails
what an earlier process left active); beyond them, and beyond the tenant's head quotas, TrainHead
answers RESOURCE_EXHAUSTED at once. Scheduling: `workers` jobs run at a time; when one ends, the
tenant served longest ago goes next (`service.jobs.scheduler`). A running job is stopped by
CancelJob, by its wall-clock timeout or by shutdown through its `JobControl`; its worker is
released only once its training thread has returned. Every state write's outcome is observed:
awaited, or run by `JobWriter.in_background`; a failure is logged and counted (`failed_writes`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

from heads import InvalidParams, InvalidTrainingData, TrainingStopped, utc_now
from service import metrics
from service.backbones.embedder import Embedder
from service.errors import NotFound, ResourceExhausted, TransferdError, shown
from service.jobs.control import JobControl, StopReason
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.pipeline import JobCancelled, run_training
from service.jobs.scheduler import FairQueue
from service.jobs.store import JobStore
from service.jobs.validation import TrainingLimits
from service.jobs.writer import JobWriter
from service.store.registry import HeadRegistry

log = logging.getLogger(__name__)

RESTART_REASON = "the server restarted before this job finished; nothing was published, train again"
SHUTDOWN_REASON = (
    "the server shut down before this job finished; nothing was published, train again"
)
CANCEL_REASON = "cancelled by the client"
#: How long shutdown waits for final states to be stored.
CLOSE_WRITES_S = 5.0


def timeout_reason(seconds: float) -> str:
    """The error of a job stopped by its wall-clock timeout."""
    return (
        f"the job ran longer than this server's limit of {seconds:g} s and was stopped; "
        "nothing was published: train on fewer examples or with cheaper params"
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


@dataclass
class _Live:
    """What the manager holds for a job of this process that is not final yet."""

    snapshot: JobSnapshot
    request: TrainingRequest
    control: JobControl = field(default_factory=JobControl)
    task: asyncio.Task[None] | None = None  # set once the job has a worker
    started: bool = False  # whether its task began (one cancelled before that never runs)


class JobManager:
    def __init__(
        self,
        store: JobStore,
        embedder: Embedder,
        registry: HeadRegistry,
        executor: Executor,
        limits: JobLimits,
    ) -> None:
        self._store = store
        self._writer = JobWriter(store)
        self._embedder = embedder
        self._registry = registry
        self._executor = executor
        self._limits = limits
        self._admission = asyncio.Lock()  # check-then-insert must not interleave
        self._live: dict[str, _Live] = {}
        self._queue: FairQueue[str] = FairQueue()
        self._running = 0  # jobs holding a worker (their training thread may still run)
        self._watchers: dict[str, set[asyncio.Queue[JobSnapshot]]] = defaultdict(set)
        self._closing = False

    @property
    def failed_writes(self) -> int:
        """Job state writes that raised since start-up (each was logged)."""
        return self._writer.failed_writes

    @property
    def training_limits(self) -> TrainingLimits:
        """What TrainHead requests may ask for; pass to `validate_training_request`."""
        return self._limits.training

    def recover(self) -> None:
        """At start-up: jobs a previous process left queued or running are failed, clearly."""
        count = self._store.fail_interrupted(RESTART_REASON)
        if count:
            log.warning("failed %d job(s) interrupted by a restart", count)

    async def submit(self, tenant: str, request: TrainingRequest) -> JobSnapshot:
        """Admits a request that `validate_training_request` passed (with `training_limits`) as a
        queued job.

        Raises:
            ResourceExhausted: Over a job limit or a head quota; or the job cannot be stored
                (a full disk): then nothing is queued and nothing counts against the tenant.
        """
        async with self._admission:
            if self._active(tenant) >= self._limits.max_jobs_per_tenant:
                raise ResourceExhausted(
                    f"this tenant already has {self._limits.max_jobs_per_tenant} training "
                    "jobs queued or running; wait for one to finish"
                )
            if len(self._live) >= self._limits.max_jobs_total:
                raise ResourceExhausted("the server has too many training jobs; retry later")
            await self._registry.check_quota(tenant, request.head)
            now = utc_now()
            job = JobSnapshot(
                job_id=uuid.uuid4().hex, tenant=tenant, head=request.head,
                backbone=request.backbone, kind=request.kind,
                num_examples=len(request.inputs), state=JobState.QUEUED, stage="queued",
                progress=0.0, created_at=now, updated_at=now,
            )  # fmt: skip
            await self._store.insert(job)  # a failure leaves nothing behind: not yet counted
            self._live[job.job_id] = _Live(job, request)
        metrics.JOBS_ACTIVE.set(len(self._live))
        self._queue.push(tenant, job.job_id)
        self._dispatch()
        return job

    async def get(self, tenant: str, job_id: str) -> JobSnapshot:
        live = self._live.get(job_id)
        if live is not None and live.snapshot.tenant == tenant:
            return live.snapshot
        unstored = self._writer.unstored(job_id)
        if unstored is not None and unstored.tenant == tenant:
            return unstored
        stored = await self._store.get(tenant, job_id) if job_id else None
        if stored is None:
            raise NotFound(f"job {shown(job_id)} not found")
        return stored

    async def cancel(self, tenant: str, job_id: str) -> JobSnapshot:
        """Stops the job and answers once its work has stopped (a running training thread
        stops at its next checkpoint, well within a second)."""
        job = await self.get(tenant, job_id)
        live = self._live.get(job_id)
        if job.state.terminal or live is None:
            return job
        if self._queue.remove(tenant, job_id):  # never started: nothing to stop
            live.control.stop(StopReason.CANCELLED)
            await self._finish(job_id, **_stopped(StopReason.CANCELLED, self._limits.timeout_s))
            return await self.get(tenant, job_id)
        if not live.control.stop(StopReason.CANCELLED):
            return job  # too late: publishing is atomic and is not interrupted halfway
        if live.task is not None:
            asked = time.monotonic()
            live.task.cancel()  # interrupts embedding at once; a training thread is awaited
            await asyncio.gather(live.task, return_exceptions=True)
            log.info("job %s: cancelled; stopped in %.2f s", job_id, time.monotonic() - asked)
        return await self.get(tenant, job_id)

    async def watch(self, tenant: str, job_id: str) -> AsyncIterator[JobSnapshot]:
        """The job now, then after every change, until it is terminal."""
        queue: asyncio.Queue[JobSnapshot] = asyncio.Queue()
        self._watchers[job_id].add(queue)  # subscribe first: no change falls between
        try:
            job = await self.get(tenant, job_id)
            yield job
            while not job.state.terminal:
                job = await queue.get()
                yield job
        finally:
            self._watchers[job_id].discard(queue)
            if not self._watchers[job_id]:
                del self._watchers[job_id]

    async def close(self) -> None:
        """On shutdown: unfinished jobs are failed with a clear reason."""
        self._closing = True  # no queued job starts from now on
        running: list[asyncio.Task[None]] = []
        finishing: dict[str, Any] = {}
        for job_id, live in list(self._live.items()):
            stopping = live.control.stop(StopReason.SHUTDOWN)
            if live.task is not None:
                if stopping:  # else it is publishing: let that atomic step finish
                    live.task.cancel()
                running.append(live.task)
            elif self._queue.remove(live.snapshot.tenant, job_id):
                finishing[job_id] = self._finish(job_id, **_stopped(StopReason.SHUTDOWN, 0))
        # A running job's task reports its own failure (`_reap`); a queued job's final write here.
        outcomes = await asyncio.gather(*running, *finishing.values(), return_exceptions=True)
        for job_id, outcome in zip(finishing, outcomes[len(running) :], strict=True):
            if isinstance(outcome, Exception):
                self._writer.failed(f"job {job_id}: storing its final state", outcome)
        await self._writer.close(CLOSE_WRITES_S)

    def _active(self, tenant: str) -> int:
        return sum(1 for live in self._live.values() if live.snapshot.tenant == tenant)

    def _dispatch(self) -> None:
        """Gives free workers to queued jobs, tenants in turn."""
        while not self._closing and self._running < self._limits.workers:
            popped = self._queue.pop()
            if popped is None:
                return
            _tenant, job_id = popped
            self._running += 1
            live = self._live[job_id]
            live.task = asyncio.get_running_loop().create_task(
                self._run(job_id), name=f"job-{job_id}"
            )
            live.task.add_done_callback(functools.partial(self._reap, job_id))

    def _reap(self, job_id: str, task: asyncio.Task[None]) -> None:
        """Observes a job's task when it is done: reports its failure (its final write, which it
        awaits, raised), and ends a job whose task was cancelled before it began, so never ran
        `_run`."""
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._writer.failed(f"job {job_id}", error)
            return
        live = self._live.get(job_id)
        if live is None or live.started:
            return
        self._release(live.snapshot.tenant)
        outcome = _stopped(live.control.reason or StopReason.SHUTDOWN, self._limits.timeout_s)
        self._writer.in_background(
            self._finish(job_id, **outcome), f"job {job_id}: storing its final state"
        )

    def _release(self, tenant: str) -> None:
        """A job's work (its training thread included) has ended: its worker goes to the next."""
        self._running -= 1
        self._queue.release(tenant)
        self._dispatch()

    def _update(self, job_id: str, **changes: Any) -> JobSnapshot:
        """Applies a change in memory, tells watchers, and queues its (coalesced) write."""
        live = self._live[job_id]
        job = live.snapshot = replace(live.snapshot, updated_at=utc_now(), **changes)
        self._writer.progress(job)
        self._tell(job)
        return job

    def _tell(self, job: JobSnapshot) -> None:
        for queue in self._watchers.get(job.job_id, ()):
            queue.put_nowait(job)

    def _report(self, job_id: str, stage: str, progress: float) -> None:
        live = self._live.get(job_id)
        if live is not None and not live.snapshot.state.terminal:
            progress = round(max(progress, live.snapshot.progress), 4)
            self._update(job_id, stage=stage, progress=progress)

    async def _finish(self, job_id: str, **changes: Any) -> None:
        """Makes the job final: it stops counting at once; its state is stored (retried in the
        background if the store fails) before watchers hear of it, or after a bounded wait."""
        live = self._live.pop(job_id)
        job = replace(live.snapshot, updated_at=utc_now(), **changes)
        metrics.JOBS_ACTIVE.set(len(self._live))
        await self._writer.final(job)
        self._tell(job)
        metrics.JOBS_FINISHED.labels(state=job.state.value).inc()
        seconds = (job.updated_at - job.created_at).total_seconds()
        metrics.JOB_DURATION.labels(state=job.state.value).observe(seconds)

    async def _run(self, job_id: str) -> None:
        live = self._live[job_id]
        live.started = True
        tenant = live.snapshot.tenant
        timeout_s = self._limits.timeout_s
        timer = asyncio.get_running_loop().call_later(timeout_s, self._expire, job_id)
        outcome: dict[str, Any]
        try:
            self._update(job_id, state=JobState.RUNNING, stage="starting")
            card = await run_training(
                tenant, live.request, self._embedder, self._registry, self._executor,
                self._limits.embed_chunk,
                report=lambda stage, progress: self._report(job_id, stage, progress),
                control=live.control,
            )  # fmt: skip
            outcome = dict(
                state=JobState.SUCCEEDED, stage="done", progress=1.0,
                version=card.version, metrics=dict(card.metrics),
            )  # fmt: skip
        except (asyncio.CancelledError, JobCancelled, TrainingStopped):
            reason = live.control.reason or StopReason.SHUTDOWN
            outcome = _stopped(reason, timeout_s)
        except Exception as error:
            message = _client_message(error)
            if message is None:
                log.exception("job %s failed", job_id)
                message = "training failed because of an internal error; the server log has details"
            outcome = dict(state=JobState.FAILED, stage="failed", error=message)
        finally:
            timer.cancel()
            self._release(tenant)  # run_training has returned: so has its training thread
        await self._finish(job_id, **outcome)

    def _expire(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is not None and live.task is not None and live.control.stop(StopReason.TIMED_OUT):
            log.warning(
                "job %s: over its %g s timeout; stopping it", job_id, self._limits.timeout_s
            )
            live.task.cancel()


def _stopped(reason: StopReason, timeout_s: float) -> dict[str, Any]:
    """The final fields of a job stopped for `reason`."""
    if reason is StopReason.CANCELLED:
        return dict(state=JobState.CANCELLED, stage="cancelled", error=CANCEL_REASON)
    if reason is StopReason.TIMED_OUT:
        return dict(state=JobState.FAILED, stage="timed_out", error=timeout_reason(timeout_s))
    return dict(state=JobState.FAILED, stage="interrupted", error=SHUTDOWN_REASON)


def _client_message(error: Exception) -> str | None:
    """A message the tenant may see for errors about their own data; None for internal errors."""
    if isinstance(error, InvalidTrainingData | InvalidParams | TransferdError):
        return str(error)
    return None
