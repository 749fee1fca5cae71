"""The JobManager on a real database (SQLite and PostgreSQL), registry and head files, and the
tiny backbone: jobs run, cancel, fail over between replicas, survive restarts and shutdowns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from heads import utc_now
from service.backbones.inputs import TextInput
from service.errors import NotFound, ResourceExhausted, Unavailable
from service.jobs.manager import JobLimits, JobManager
from service.jobs.model import JobSnapshot, JobState, TrainingRequest
from service.jobs.payload import encode
from service.jobs.store import JobStore
from service.request_context import TRAINING_TENANT
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from service.store.schema import HeadRow, JobRow
from tests.support.postgres import database_url
from tests.support.scenario import run
from tests.support.tiny_backbone import TOPICS, TinyStack, TinyTextBackbone, running_embedder

__all__ = ["database_url"]  # the fixture, used by name

TEXTS = [text for examples in TOPICS.values() for text in examples]
LABELS = [topic for topic, examples in TOPICS.items() for _ in examples]
CHUNK = 8  # TEXTS are embedded in three chunks
POLL_S = 0.1  # claims, heartbeats and watchers: quick, so that the tests are


def _limits(workers: int = 1, per_tenant: int = 2, total: int = 4, **more: Any) -> JobLimits:
    # Positional: workers, jobs per tenant, jobs in all, embedding chunk.
    return JobLimits(workers, per_tenant, total, CHUNK, poll_s=more.pop("poll_s", POLL_S), **more)


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
class Replica:
    manager: JobManager
    registry: HeadRegistry
    db: Database

    def row(self, job_id: str) -> JobRow:
        row = self.db.call(lambda session: session.get(JobRow, job_id))
        assert row is not None, job_id
        return row

    def versions(self) -> int:
        query = select(func.count()).select_from(HeadRow)
        return int(self.db.call(lambda session: session.scalar(query)) or 0)


@dataclass
class Managing(Replica):
    stack: TinyStack


@asynccontextmanager
async def replica(
    url: str, data_dir: Path, stack: TinyStack, limits: JobLimits, recover: bool = True
) -> AsyncIterator[Replica]:
    """A replica's JobManager on the database of `url`, recovered (unless not `recover`: on
    SQLite, as a second process would not) and claiming; closed after (which hands its running
    jobs back to the queue)."""
    db = Database(data_dir, url)
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-train")
    registry = HeadRegistry(db, HeadFiles(data_dir), cache_size=4, executor=pool)
    manager = JobManager(db, stack.embedder, registry, pool if limits.workers else None, limits)
    if recover:
        manager.recover()
    manager.start()
    try:
        yield Replica(manager, registry, db)
    finally:
        await manager.close()
        db.close()
        pool.shutdown(wait=True)


@asynccontextmanager
async def managing(
    url: str, data_dir: Path, backbone: TinyTextBackbone, limits: JobLimits | None = None
) -> AsyncIterator[Managing]:
    """One replica over the tiny backbone; closed (and the runtime let go) after."""
    async with running_embedder(backbone) as stack:
        try:
            async with replica(url, data_dir, stack, limits or _limits()) as r:
                yield Managing(r.manager, r.registry, r.db, stack)
        finally:
            stack.runtime.release()


async def until(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    """Polls `condition()` (a bool, or an awaitable of one) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def test_a_job_runs_to_succeeded_and_publishes_its_head(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """A job embeds its examples through the backbone as the training tenant, in chunks, trains,
    publishes version 1 bound to the backbone's export, and watchers see progress only grow up to
    SUCCEEDED; the head it publishes predicts the topics."""

    async def scenario() -> None:
        async with managing(database_url, tmp_path, backbone) as m:
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
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """CancelJob on a job in the middle of embedding answers CANCELLED without waiting for the
    model call in flight; no further chunk is embedded, no head is published, and the next job
    of that head is version 1."""

    async def scenario() -> None:
        async with managing(database_url, tmp_path, backbone) as m:
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


def test_job_limits_per_tenant_and_in_all(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """A tenant at its limit of active jobs is refused while another tenant is admitted; at the
    server's limit everyone is refused; a queued job cancelled frees its place at once without
    ever embedding."""

    async def scenario() -> None:
        limits = _limits(workers=1, per_tenant=1, total=2)
        async with managing(database_url, tmp_path, backbone, limits) as m:
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


def test_a_restart_runs_again_what_a_previous_process_left_unfinished(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """Jobs a previous process left queued, or running under a lease nobody renews any more,
    run again from their stored request and succeed; a job of an earlier release (no stored
    request) is FAILED saying the server restarted; finished ones are kept."""
    now = utc_now()

    def left(job_id: str, state: JobState, version: int = 0) -> JobSnapshot:
        return JobSnapshot(
            job_id=job_id, tenant="acme", head=job_id, backbone="tiny-text",
            kind="logistic_regression", num_examples=len(TEXTS), state=state,
            stage=state.value, progress=0.5, created_at=now, updated_at=now, version=version,
        )  # fmt: skip

    def as_left(job_id: str, **values: object) -> None:
        def write(session: Session) -> None:
            session.execute(update(JobRow).where(JobRow.job_id == job_id).values(**values))

        db.call(write)

    db = Database(tmp_path, database_url)

    async def previous_process() -> None:
        store = JobStore(db)
        for job_id in ("queued", "running", "old", "done"):
            await store.admit(left(job_id, JobState.QUEUED), encode(_request(job_id)), 9, 9)
        dead = dict(state="running", lease_owner="dead", lease_token=1, attempts=1)
        as_left("running", **dead, lease_expires_at=now)  # expired: its replica is gone
        as_left("old", **dead, payload=None)
        as_left("done", state="succeeded", version=1)

    run(previous_process())
    db.close()

    async def scenario() -> None:
        async with managing(database_url, tmp_path, backbone, _limits(per_tenant=3)) as m:
            for job_id in ("queued", "running"):
                final = [s async for s in m.manager.watch("acme", job_id)][-1]
                assert (final.state, final.version) == (JobState.SUCCEEDED, 1), final
            old = await m.manager.get("acme", "old")
            assert (old.state, old.stage) == (JobState.FAILED, "interrupted")
            assert "restarted" in old.error
            assert (await m.manager.get("acme", "done")).version == 1
            assert m.row("running").attempts == 2
            await m.manager.submit("acme", _request())  # nothing left counts against acme

    run(scenario())


def test_shutdown_hands_a_running_job_back_and_the_next_start_runs_it(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """Closing the manager stops the job it runs: it goes back to the queue (its watchers get
    that state, then UNAVAILABLE: watch again), and the next start runs it to SUCCEEDED."""

    async def scenario() -> None:
        seen: list[JobSnapshot] = []
        async with managing(database_url, tmp_path, backbone) as m:
            runtime = m.stack.runtime
            runtime.hold()
            job = await m.manager.submit("acme", _request())
            await runtime.until(lambda: runtime.submitted(TRAINING_TENANT) == 1, "embedding")

            async def follow() -> None:
                async for snapshot in m.manager.watch("acme", job.job_id):
                    seen.append(snapshot)

            watching = asyncio.ensure_future(follow())
            await until(lambda: seen, "the watcher's first state")
        with pytest.raises(Unavailable, match="shutting down"):
            await watching
        assert (seen[-1].state, seen[-1].stage) == (JobState.QUEUED, "requeued")
        assert all(s.state is not JobState.FAILED for s in seen)

        async with managing(database_url, tmp_path, backbone) as m:
            row = m.row(job.job_id)
            assert (row.state, row.lease_owner, row.attempts) == ("queued", None, 1)
            final = [s async for s in m.manager.watch("acme", job.job_id)][-1]
            assert (final.state, final.version) == (JobState.SUCCEEDED, 1)
            assert m.row(job.job_id).attempts == 2

    run(scenario())


def test_an_api_only_replica_queues_and_a_training_replica_runs_it(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """A replica without workers never claims; its job is run by a training replica, polling
    the database, which the API-only replica's WatchJob follows."""

    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            api_limits = _limits(workers=0, poll_s=0.5)
            async with replica(database_url, tmp_path / "api", stack, api_limits) as api:
                job = await api.manager.submit("acme", _request())
                await asyncio.sleep(1.5)  # three polls of a replica that would claim
                assert (await api.manager.get("acme", job.job_id)).state is JobState.QUEUED
                assert stack.runtime.submitted(TRAINING_TENANT) == 0
                trainer_limits = _limits(poll_s=0.5)
                async with replica(database_url, tmp_path / "t", stack, trainer_limits):
                    await until(
                        lambda: stack.runtime.submitted(TRAINING_TENANT) > 0, "the trainer's claim"
                    )
                    seen = [s async for s in api.manager.watch("acme", job.job_id)]
                assert (seen[-1].state, seen[-1].version) == (JobState.SUCCEEDED, 1)
                assert api.row(job.job_id).lease_owner != ""

    run(scenario())


def test_cancel_on_one_replica_stops_the_job_another_runs(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            runtime = stack.runtime
            try:
                async with (
                    replica(database_url, tmp_path / "a", stack, _limits()) as runner,
                    replica(database_url, tmp_path / "b", stack, _limits(workers=0)) as front,
                ):
                    runtime.hold()
                    job = await front.manager.submit("acme", _request())
                    await runtime.until(lambda: runtime.submitted(TRAINING_TENANT) == 1, "claim")
                    with pytest.raises(NotFound):
                        await front.manager.cancel("globex", job.job_id)
                    asked = asyncio.get_running_loop().time()
                    cancelled = await front.manager.cancel("acme", job.job_id)
                    took = asyncio.get_running_loop().time() - asked
                    assert cancelled.state is JobState.CANCELLED and "cancel" in cancelled.error
                    assert took < 2.0, took
                    assert runtime.served_calls[0].state == "waiting"  # stopped, not finished
                    runtime.release()
                    assert (await runner.manager.get("acme", job.job_id)).state is (
                        JobState.CANCELLED
                    )
                    assert runner.versions() == 0
            finally:
                runtime.release()

    run(scenario())


def test_a_replica_that_stops_renewing_loses_the_job_to_another_and_publishes_nothing(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    """Replica A claims a job and looks dead (its lease is an hour, renewed every 20 minutes,
    and has expired); replica B claims it again with a new fencing token and runs it. A, which
    was only slow, finds its writes refused, stops, and writes nothing: one version exists."""

    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            runtime = stack.runtime
            slow = _limits(lease_s=3600.0)
            try:
                async with replica(database_url, tmp_path / "a", stack, slow) as a:
                    runtime.hold()
                    job = await a.manager.submit("acme", _request())
                    await runtime.until(lambda: runtime.submitted(TRAINING_TENANT) == 1, "A runs")
                    assert a.row(job.job_id).lease_token == 1

                    def expire(session: Session) -> None:
                        session.execute(
                            update(JobRow)
                            .where(JobRow.job_id == job.job_id)
                            .values(lease_expires_at=utc_now())
                        )

                    a.db.call(expire)
                    b_replica = replica(database_url, tmp_path / "b", stack, _limits(), False)
                    async with b_replica as b:
                        await until(lambda: a.row(job.job_id).lease_token == 2, "B's claim")
                        runtime.release()
                        final = [s async for s in b.manager.watch("acme", job.job_id)][-1]
                        assert (final.state, final.version) == (JobState.SUCCEEDED, 1)
                        row = a.row(job.job_id)
                        assert (row.attempts, row.lease_token, row.version) == (2, 2, 1)
                        assert (await a.manager.get("acme", job.job_id)) == final
                    assert a.versions() == 1
                    assert a.manager.failed_writes == 0  # refused writes are not failures
            finally:
                runtime.release()

    run(scenario())


def test_a_request_over_the_stored_size_limit_is_refused_and_nothing_is_queued(
    database_url: str,
    tmp_path: Path,
    backbone: TinyTextBackbone,
) -> None:
    async def scenario() -> None:
        limits = _limits(max_payload_bytes=200)
        async with managing(database_url, tmp_path, backbone, limits) as m:
            with pytest.raises(ResourceExhausted, match="TRANSFERD_MAX_JOB_PAYLOAD_MB"):
                await m.manager.submit("acme", _request())
            count = select(func.count()).select_from(JobRow)
            assert m.db.call(lambda session: session.scalar(count)) == 0

    run(scenario())
