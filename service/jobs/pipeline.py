"""One training job from start to finish: embed the examples, train, publish.

Progress over the whole job: embedding 0–50%, training (heads' own stages) 50–95%, publishing
95–100%.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from heads import HeadCard, train_head
from service.backbones.embedder import Embedder
from service.jobs.model import TrainingRequest
from service.store.registry import HeadRegistry

Report = Callable[[str, float], None]  # called on the event loop

EMBED_SHARE = 0.5
TRAIN_SHARE = 0.45


class JobCancelled(Exception):
    """Raised inside training when its job was cancelled (aborts heads' fit between stages)."""


async def run_training(
    tenant: str,
    request: TrainingRequest,
    embedder: Embedder,
    registry: HeadRegistry,
    executor: Executor,
    chunk_size: int,
    report: Report,
    cancelled: Callable[[], bool],
) -> HeadCard:
    """Runs the job; `report(stage, progress)` is called at each step."""
    report("embedding", 0.0)
    chunks: list[np.ndarray] = []
    for start in range(0, len(request.inputs), chunk_size):
        # Chunks go through the backbone's batcher like any request: live traffic is not starved.
        chunk = request.inputs[start : start + chunk_size]
        wheres = [f"examples[{start + i}].input" for i in range(len(chunk))]
        result = await embedder.embed(request.backbone, chunk, field="examples", wheres=wheres)
        chunks.append(result.vectors)
        done = min(start + chunk_size, len(request.inputs))
        report("embedding", EMBED_SHARE * done / len(request.inputs))
    embeddings = np.concatenate(chunks)
    card = result.card

    loop = asyncio.get_running_loop()

    def on_progress(stage: str, fraction: float) -> None:  # called on the training thread
        if cancelled():
            raise JobCancelled()
        # heads' last stage is "done"; the job is not done until its head is published.
        job_stage = "trained" if stage == "done" else stage
        loop.call_soon_threadsafe(report, job_stage, EMBED_SHARE + TRAIN_SHARE * fraction)

    trained = await loop.run_in_executor(
        executor,
        lambda: train_head(
            request.kind,
            embeddings,
            request.targets,
            request.params,
            request.validation_fraction,
            on_progress,
        ),  # fmt: skip
    )
    report("publishing", EMBED_SHARE + TRAIN_SHARE)
    return await registry.publish(tenant, request.head, trained, card.name, card.fingerprint)
