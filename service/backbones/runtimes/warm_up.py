"""Warm-up: a backbone's first calls, run before it reports ready (as Triton's ModelWarmup does).

A model's first call of each shape pays for lazy initialisation (ONNX Runtime's kernels and
buffers, Triton's instance start); warming up makes health say SERVING only once that is paid,
so the first real request is not the slow one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import metrics
from service.backbones.runtimes.base import BackboneLoadError

log = logging.getLogger(__name__)


async def warm_up(
    backbone: str, calls: list[list[Any]], run: Callable[[list[Any]], Awaitable[Any]]
) -> None:
    """Runs each warm-up call through `run` (the runtime's own call, outside the fair batcher).

    Raises:
        BackboneLoadError: a call failed: a model that cannot run a call must not report ready.
    """
    started = time.perf_counter()
    for items in calls:
        try:
            await run(items)
        except Exception as error:  # any failure means the backbone cannot serve
            raise BackboneLoadError(
                f"{backbone}: warm-up call of {len(items)} items failed: {error}"
            ) from error
    elapsed = time.perf_counter() - started
    metrics.WARM_UP_CALLS.labels(backbone=backbone).inc(len(calls))
    log.info("%s: warmed up with %d calls in %.2fs", backbone, len(calls), elapsed)
