"""One training job from start to finish: embed the examples, train (and compare with a
from-scratch baseline on the raw inputs), publish.

Progress over the whole job: embedding 0–50%, training (heads' own stages) 50–95%, publishing
95–100%. With tracing on, each of the three is a span (`job.embedding`, `job.training` holding
one `heads.<stage>` span per stage heads reports, `job.publishing`) in the job's trace.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import numpy as np
from sqlalchemy.orm import Session

from heads import AUTO_BACKBONE, HeadCard, RawInputs, TrainedHead, train_head
from heads.fusion import Fused, fused_name
from service import metrics, tracing
from service.backbones.card import BackboneCard
from service.backbones.embedder import Embedder
from service.backbones.fused import fused_parts, is_fused
from service.jobs.control import JobControl
from service.jobs.model import TrainingRequest
from service.request_context import TRAINING_TENANT
from service.store.registry import HeadRegistry

log = logging.getLogger(__name__)

Report = Callable[[str, float], None]  # called on the event loop
T = TypeVar("T")

EMBED_SHARE = 0.5
TRAIN_SHARE = 0.45


class JobCancelled(Exception):
    """Raised when a stopped job reaches a point where it checks (between chunks, at publish)."""


async def run_training(
    tenant: str,
    request: TrainingRequest,
    embedder: Embedder,
    registry: HeadRegistry,
    executor: Executor,
    chunk_size: int,
    report: Report,
    control: JobControl,
    commit_with: Callable[[TrainedHead, Session, int], None] | None = None,
) -> HeadCard:
    """Runs the job; `report(stage, progress)` is called at each step; `commit_with(trained,
    session, version)` runs in the publishing transaction (see `HeadRegistry.publish`) and may
    raise to publish nothing.

    Raises:
        JobCancelled or heads.TrainingStopped: ``control`` was stopped (see its reason).
    """
    auto = request.backbone == AUTO_BACKBONE
    if auto:
        backbones = [served.card for served in embedder.candidates_for(request.inputs)]
    elif is_fused(request.backbone):
        backbones = [served.card for served in fused_parts(embedder, request.backbone)]
    else:
        backbones = [embedder.get(request.backbone).card]
    with tracing.span("job.embedding", {"transferd.examples": len(request.inputs)}):
        vectors, raw = await _embed_examples(
            tenant, request, backbones, embedder, chunk_size, report, control
        )
    # One backbone: its embeddings; a fused one: every part's, weighted by heads; "auto": every
    # candidate's, chosen from (their fusion too) by heads.
    embeddings: np.ndarray | dict[str, np.ndarray] | Fused
    if auto:
        embeddings = vectors
    elif len(backbones) > 1:
        embeddings = Fused(vectors)
    else:
        embeddings = vectors[backbones[0].name]

    loop = asyncio.get_running_loop()
    stages = tracing.Stages("heads")

    def on_progress(stage: str, fraction: float) -> None:  # called on the training thread
        stages.enter(stage)
        # heads' last stage is "done"; the job is not done until its head is published.
        job_stage = "trained" if stage == "done" else stage
        loop.call_soon_threadsafe(report, job_stage, EMBED_SHARE + TRAIN_SHARE * fraction)

    def train() -> TrainedHead:
        return train_head(
            request.kind, embeddings, request.targets, request.params,
            request.validation_fraction, on_progress, should_stop=control.is_set, raw=raw,
            fuse_candidates=auto,
        )  # fmt: skip

    with tracing.span("job.training", {"transferd.head_kind": request.kind}), stages:
        trained = await run_to_the_end(loop.run_in_executor(executor, train))
    name, fingerprint = _trained_on(trained, backbones)
    _tell_of_negative_transfer(tenant, request.head, name, trained)
    if not control.begin_publishing():
        raise JobCancelled()
    report("publishing", EMBED_SHARE + TRAIN_SHARE)
    with tracing.span("job.publishing", {"transferd.backbone": name}):
        return await registry.publish(
            tenant, request.head, trained, name, fingerprint,
            commit_with=None if commit_with is None else functools.partial(commit_with, trained),
        )  # fmt: skip


async def _embed_examples(
    tenant: str,
    request: TrainingRequest,
    backbones: list[BackboneCard],
    embedder: Embedder,
    chunk_size: int,
    report: Report,
    control: JobControl,
) -> tuple[dict[str, np.ndarray], RawInputs]:
    """The examples embedded by each backbone (by name), and as the from-scratch baseline sees
    them; progress covers the embedding share of the job. Examples `tenant` embedded before
    come from its part of the embedding cache.

    Raises:
        JobCancelled: ``control`` was stopped (checked between chunks).
    """
    report("embedding", 0.0)
    # Embedding with several backbones costs their sum: each gets a share of the embedding
    # progress in proportion to its width, a rough proxy of its compute.
    widths = [card.dim for card in backbones]
    vectors: dict[str, np.ndarray] = {}
    raw_chunks: list[RawInputs] = []
    for index, card in enumerate(backbones):
        before, share = sum(widths[:index]) / sum(widths), widths[index] / sum(widths)
        chunks: list[np.ndarray] = []
        for start in range(0, len(request.inputs), chunk_size):
            if control.is_set():
                raise JobCancelled()
            # Chunks go through the backbone's fair batcher as one more tenant, "training": live
            # traffic keeps its share however many jobs run.
            chunk = request.inputs[start : start + chunk_size]
            wheres = [f"examples[{start + i}].input" for i in range(len(chunk))]
            result = await embedder.embed(
                card.name, chunk, field="examples", wheres=wheres, tenant=tenant, training=True
            )
            chunks.append(result.vectors)
            if index == 0:  # what the from-scratch baseline learns from (heads.transfer)
                raw_chunks.append(
                    await embedder.baseline_inputs(card.name, chunk, wheres, TRAINING_TENANT)
                )
            done = min(start + chunk_size, len(request.inputs)) / len(request.inputs)
            report("embedding", EMBED_SHARE * (before + share * done))
        vectors[card.name] = np.concatenate(chunks)
    return vectors, RawInputs.join(raw_chunks)


def _trained_on(trained: TrainedHead, backbones: list[BackboneCard]) -> tuple[str, str]:
    """The name and fingerprint of the backbone the head was trained on: the one asked for or
    the one heads chose; for a fused head, its parts' joined (`heads.fusion`)."""
    by_name = {card.name: card for card in backbones}
    if trained.summary.fusion:
        parts = [by_name[part.backbone] for part in trained.summary.fusion]
        return fused_name([c.name for c in parts]), fused_name([c.fingerprint for c in parts])
    chosen = [score.backbone for score in trained.summary.backbone_scores if score.chosen]
    card = by_name[chosen[0] if chosen else backbones[0].name]
    return card.name, card.fingerprint


def _tell_of_negative_transfer(tenant: str, head: str, backbone: str, trained: TrainedHead) -> None:
    """Logs and counts a head that a from-scratch model beat: it is still published (the job
    succeeds), and its Job and Head carry the warning."""
    transfer = trained.summary.transfer
    if transfer is None or not transfer.negative_transfer:
        return
    metrics.NEGATIVE_TRANSFER.labels(backbone=backbone).inc()
    log.warning("tenant %s, head %s on %s: %s", tenant, head, backbone, transfer.warning)


async def run_to_the_end(thread: asyncio.Future[T]) -> T:
    """Awaits a training thread's result; if this task is cancelled meanwhile, still waits for
    the thread to return before raising CancelledError.

    A thread cannot be interrupted, only told to stop (`JobControl`); until it has returned it
    uses its worker, so the job must keep its slot, or the next job would share the core with it.
    """
    try:
        return await asyncio.shield(thread)
    except asyncio.CancelledError:
        while not thread.done():
            try:
                await asyncio.wait([thread])
            except asyncio.CancelledError:
                continue  # cancelled again (shutdown after a cancel): the wait is the same
        if not thread.cancelled():
            thread.exception()  # retrieved: its TrainingStopped is expected, not news
        raise
