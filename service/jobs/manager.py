"""The job manager: accepts training jobs, runs them on a bounded pool, and lets clients watch.

Limits protect the server: a tenant may have `max_active_per_tenant` jobs queued or running, the
server `max_active_total`; beyond them TrainHead answers RESOURCE_EXHAUSTED at once. At most
`workers` jobs run at the same time; the rest wait in order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from heads import InvalidParams, InvalidTrainingData
from service import metrics
from service.backbones.embedder import Embedder
from service.errors import NotFound, ResourceExhausted, TransferdError
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.pipeline import JobCancelled, run_training
from service.jobs.store import JobStore
from service.store.database import utcnow
from service.store.registry import HeadRegistry

log = logging.getLogger(__name__)

RESTART_REASON = "the server restarted before this job finished; nothing was published, train again"
SHUTDOWN_REASON = (
    "the server shut down before this job finished; nothing was published, train again"
)


@dataclass(frozen=True)
class JobLimits:
    workers: int
    max_active_per_tenant: int
    max_active_total: int
    embed_chunk: int


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
        self._embedder = embedder
        self._registry = registry
        self._executor = executor
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.workers)
        self._admission = asyncio.Lock()  # count-then-insert must not interleave
        self._live: dict[str, JobSnapshot] = {}  # jobs of this process not yet terminal
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, set[asyncio.Queue[JobSnapshot]]] = defaultdict(set)
        self._cancel_requested: set[str] = set()

    def recover(self) -> None:
        """At start-up: jobs a previous process left queued or running are failed, clearly."""
        count = self._store.fail_interrupted(RESTART_REASON)
        if count:
            log.warning("failed %d job(s) interrupted by a restart", count)

    async def submit(self, tenant: str, request: TrainingRequest) -> JobSnapshot:
        async with self._admission:
            if await self._store.count_active(tenant) >= self._limits.max_active_per_tenant:
                raise ResourceExhausted(
                    f"this tenant already has {self._limits.max_active_per_tenant} training "
                    "jobs queued or running; wait for one to finish"
                )
            if await self._store.count_active() >= self._limits.max_active_total:
                raise ResourceExhausted("the server has too many training jobs; retry later")
            now = utcnow()
            job = JobSnapshot(
                job_id=uuid.uuid4().hex, tenant=tenant, head=request.head,
                backbone=request.backbone, kind=request.kind,
                num_examples=len(request.inputs), state=JobState.QUEUED, stage="queued",
                progress=0.0, created_at=now, updated_at=now,
            )  # fmt: skip
            await self._store.insert(job)
        self._live[job.job_id] = job
        metrics.JOBS_ACTIVE.set(len(self._live))
        self._tasks[job.job_id] = asyncio.get_running_loop().create_task(
            self._run(job.job_id, request), name=f"job-{job.job_id}"
        )
        return job

    async def get(self, tenant: str, job_id: str) -> JobSnapshot:
        live = self._live.get(job_id)
        if live is not None and live.tenant == tenant:
            return live
        stored = await self._store.get(tenant, job_id) if job_id else None
        if stored is None:
            raise NotFound(f"job '{job_id}' not found")
        return stored

    async def cancel(self, tenant: str, job_id: str) -> JobSnapshot:
        job = await self.get(tenant, job_id)
        if job.state.terminal or job.stage == "publishing":
            return job  # too late: publishing is atomic and is not interrupted halfway
        self._cancel_requested.add(job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
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
        for job_id, task in list(self._tasks.items()):
            self._cancel_requested.discard(job_id)
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _update(self, job_id: str, **changes: Any) -> JobSnapshot:
        """Applies a change in memory, tells watchers, and queues its write (in order)."""
        job = replace(self._live[job_id], updated_at=utcnow(), **changes)
        self._live[job_id] = job
        self._store.save(job)
        for queue in self._watchers.get(job_id, ()):
            queue.put_nowait(job)
        return job

    def _report(self, job_id: str, stage: str, progress: float) -> None:
        job = self._live.get(job_id)
        if job is not None and not job.state.terminal:
            self._update(job_id, stage=stage, progress=round(max(progress, job.progress), 4))

    async def _finish(self, job_id: str, **changes: Any) -> None:
        job = replace(self._live[job_id], updated_at=utcnow(), **changes)
        self._live[job_id] = job
        await self._store.save(job)  # durable before anyone is told it is final
        for queue in self._watchers.get(job_id, ()):
            queue.put_nowait(job)
        del self._live[job_id]
        self._tasks.pop(job_id, None)
        metrics.JOBS_ACTIVE.set(len(self._live))
        metrics.JOBS_FINISHED.labels(state=job.state.value).inc()
        seconds = (job.updated_at - job.created_at).total_seconds()
        metrics.JOB_DURATION.labels(state=job.state.value).observe(seconds)
        self._cancel_requested.discard(job_id)

    async def _run(self, job_id: str, request: TrainingRequest) -> None:
        tenant = self._live[job_id].tenant
        try:
            async with self._slots:
                self._update(job_id, state=JobState.RUNNING, stage="starting")
                card = await run_training(
                    tenant, request, self._embedder, self._registry, self._executor,
                    self._limits.embed_chunk,
                    report=lambda stage, progress: self._report(job_id, stage, progress),
                    cancelled=lambda: job_id in self._cancel_requested,
                )  # fmt: skip
            await self._finish(
                job_id, state=JobState.SUCCEEDED, stage="done", progress=1.0,
                version=card.version, metrics=dict(card.metrics),
            )  # fmt: skip
        except (asyncio.CancelledError, JobCancelled):
            if job_id in self._cancel_requested:
                await self._finish(
                    job_id,
                    state=JobState.CANCELLED,
                    stage="cancelled",
                    error="cancelled by the client",
                )
            else:
                await self._finish(
                    job_id, state=JobState.FAILED, stage="interrupted", error=SHUTDOWN_REASON
                )
        except Exception as error:  # noqa: BLE001 - every failure must end the job, not hang it
            message = _client_message(error)
            if message is None:
                log.exception("job %s failed", job_id)
                message = "training failed because of an internal error; the server log has details"
            await self._finish(job_id, state=JobState.FAILED, stage="failed", error=message)


def _client_message(error: Exception) -> str | None:
    """A message the tenant may see for errors about their own data; None for internal errors."""
    if isinstance(error, InvalidTrainingData | InvalidParams | TransferdError):
        return str(error)
    return None
