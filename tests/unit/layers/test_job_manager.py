"""The JobManager on a real JobStore and registry (SQLite, head files) and the tiny backbone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.backbones.inputs import TextInput
from service.errors import NotFound, ResourceExhausted
from service.jobs.manager import JobLimits, JobManager
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.store import JobStore
from service.request_context import TRAINING_TENANT
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from tests.support.scenario import run
from tests.support.tiny_backbone import TOPICS, TinyStack, TinyTextBackbone, running_embedder

TEXTS = [text for examples in TOPICS.values() for text in examples]
LABELS = [topic for topic, examples in TOPICS.items() for _ in examples]
CHUNK = 8  # TEXTS are embedded in three chunks


def _limits(workers: int = 1, per_tenant: int = 2, total: int = 4) -> JobLimits:
    # Positional: workers, jobs per tenant, jobs in all, embedding chunk.
    return JobLimits(workers, per_tenant, total, CHUNK)


def _request(head: str = "topic") -> TrainingRequest:
    return TrainingRequest(
        head=head,
        backbone="tiny-text",
        kind="logistic_regression",
        inputs=[TextInput(text) for text in TEXTS],
        targets=list(LABELS),
        params={"C": "4"},  # given: no cross-validated search, a faster job
        validation_fraction=0.2,
    )


@dataclass
class Managing:
    manager: JobManager
    stack: TinyStack
    registry: HeadRegistry
    db: Database


@asynccontextmanager
async def managing(
    data_dir: Path, backbone: TinyTextBackbone, limits: JobLimits | None = None
) -> AsyncIterator[Managing]:
    """A recovered JobManager over the tiny backbone; closed (and the runtime let go) after."""
    db = Database(data_dir)
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-train")
    registry = HeadRegistry(db, HeadFiles(data_dir), cache_size=4, executor=pool)
    try:
        async with running_embedder(backbone) as stack:
            manager = JobManager(JobStore(db), stack.embedder, registry, pool, limits or _limits())
            manager.recover()
            try:
                yield Managing(manager, stack, registry, db)
            finally:
                stack.runtime.release()
                await manager.close()
    finally:
        db.close()
        pool.shutdown(wait=True)


def test_a_job_runs_to_succeeded_and_publishes_its_head(
    tmp_path: Path, backbone: TinyTextBackbone
) -> None:
    """A job embeds its examples through the backbone as the training tenant, in chunks, trains,
    publishes version 1 bound to the backbone's export, and watchers see progress only grow up to
    SUCCEEDED; the head it publishes predicts the topics."""

    async def scenario() -> None:
        async with managing(tmp_path, backbone) as m:
            job = await m.manager.submit("acme", _request())
            assert job.state is JobState.QUEUED
            seen = [snapshot async for snapshot in m.manager.watch("acme", job.job_id)]
            final = seen[-1]
            assert final.state is JobState.SUCCEEDED, final.error
            assert (final.version, final.progress, final.num_examples) == (1, 1.0, len(TEXTS))
            progress = [snapshot.progress for snapshot in seen]
            assert progress == sorted(progress)
            assert "embedding" in {snapshot.stage for snapshot in seen}
            assert m.stack.runtime.submitted(TRAINING_TENANT) == len(TEXTS) // CHUNK
            assert (await m.manager.get("acme", job.job_id)).state is JobState.SUCCEEDED
            with pytest.raises(NotFound):
                await m.manager.get("globex", job.job_id)
            card = await m.registry.get("acme", "topic")
            assert card.version == 1 and card.num_examples == len(TEXTS)
            assert (card.backbone, card.backbone_fingerprint) == (
                backbone.card.name,
                backbone.card.fingerprint,
            )
            head = await m.registry.load("acme", "topic")
            probes = ["a goal for the team", "rain and snow tonight"]
            predicted = [p.label for p in head.predict(backbone.vectors(probes))]
            assert predicted == ["sports", "weather"]

    run(scenario())


def test_cancel_stops_a_running_job_at_once_and_publishes_nothing(
    tmp_path: Path, backbone: TinyTextBackbone
) -> None:
    """CancelJob on a job in the middle of embedding answers CANCELLED without waiting for the
    model call in flight; no further chunk is embedded, no head is published, and the next job
    of that head is version 1."""

    async def scenario() -> None:
        async with managing(tmp_path, backbone) as m:
            runtime = m.stack.runtime
            runtime.hold()
            job = await m.manager.submit("acme", _request())
            await runtime.until(lambda: len(runtime.served_calls) == 1, "the first chunk's call")
            cancelled = await m.manager.cancel("acme", job.job_id)
            assert cancelled.state is JobState.CANCELLED and "cancel" in cancelled.error
            assert runtime.served_calls[0].state == "waiting"  # the call it was waiting for
            runtime.release()
            stored = await m.manager.get("acme", job.job_id)
            assert stored.state is JobState.CANCELLED and stored.version == 0
            with pytest.raises(NotFound):
                await m.registry.get("acme", "topic")
            again = await m.manager.submit("acme", _request())
            finals = [s async for s in m.manager.watch("acme", again.job_id)]
            assert (finals[-1].state, finals[-1].version) == (JobState.SUCCEEDED, 1)
            assert runtime.submitted(TRAINING_TENANT) == 1 + len(TEXTS) // CHUNK

    run(scenario())


def test_job_limits_per_tenant_and_in_all(tmp_path: Path, backbone: TinyTextBackbone) -> None:
    """A tenant at its limit of active jobs is refused while another tenant is admitted; at the
    server's limit everyone is refused; a queued job cancelled frees its place at once without
    ever embedding."""

    async def scenario() -> None:
        async with managing(tmp_path, backbone, _limits(workers=1, per_tenant=1, total=2)) as m:
            runtime, manager = m.stack.runtime, m.manager
            runtime.hold()
            running = await manager.submit("acme", _request())
            await runtime.until(lambda: runtime.submitted(TRAINING_TENANT) == 1, "acme's job")
            with pytest.raises(ResourceExhausted, match="this tenant"):
                await manager.submit("acme", _request("other"))
            queued = await manager.submit("globex", _request())
            with pytest.raises(ResourceExhausted, match="too many"):
                await manager.submit("initech", _request())
            cancelled = await manager.cancel("globex", queued.job_id)
            assert cancelled.state is JobState.CANCELLED
            assert (await manager.get("acme", running.job_id)).state is JobState.RUNNING
            admitted = await manager.submit("initech", _request())
            assert admitted.state is JobState.QUEUED
            assert runtime.submitted(TRAINING_TENANT) == 1  # only acme's job has embedded

    run(scenario())


def test_recover_fails_what_a_previous_process_left_active(
    tmp_path: Path, backbone: TinyTextBackbone
) -> None:
    """After a restart, jobs stored as queued or running are FAILED (interrupted, saying the
    server restarted), finished ones are kept, and they no longer count against the tenant."""
    now = datetime.now(UTC)

    def left(job_id: str, state: JobState, version: int = 0) -> JobSnapshot:
        return JobSnapshot(
            job_id=job_id, tenant="acme", head="topic", backbone="tiny-text",
            kind="logistic_regression", num_examples=3, state=state, stage=state.value,
            progress=0.5, created_at=now, updated_at=now, version=version,
        )  # fmt: skip

    async def previous_process() -> None:
        db = Database(tmp_path)
        store = JobStore(db)
        for job in (
            left("queued", JobState.QUEUED),
            left("running", JobState.RUNNING),
            left("done", JobState.SUCCEEDED, version=1),
        ):
            await store.insert(job)
        db.close()

    async def scenario() -> None:
        async with managing(tmp_path, backbone, _limits(per_tenant=1)) as m:
            for job_id in ("queued", "running"):
                job = await m.manager.get("acme", job_id)
                assert (job.state, job.stage) == (JobState.FAILED, "interrupted")
                assert "restarted" in job.error
            done = await m.manager.get("acme", "done")
            assert (done.state, done.version) == (JobState.SUCCEEDED, 1)
            await m.manager.submit("acme", _request())  # nothing left counts against acme

    run(previous_process())
    run(scenario())
