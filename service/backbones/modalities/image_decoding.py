"""Image decoding on its own bounded pool, tenants served in turn.

Decoding a large PNG costs seconds of CPU where tokenizing a text costs microseconds, so images
never share the text tokenizers' pool: one tenant's images cannot slow another tenant's text.
Within the pool, tenants take turns image by image (a `FairBatcher` whose calls are one image
each, as many in flight as the pool has threads), and an image whose request was cancelled or
expired is never decoded.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import numpy as np

from service.backbones.batcher import CallPolicy, FairBatcher
from service.backbones.modalities.image_preprocessing import ImagePreprocessor

# One decode task: the image's bytes, how errors name it, and its declared pixels (its cost).
DecodeTask = tuple[bytes, str, int]


def _one_per_call(items: list[Any]) -> list[list[int]]:
    return [[index] for index in range(len(items))]


class ImageDecoder:
    """Decodes one image backbone's inputs on a pool shared with the other image backbones.

    Args:
        name: The backbone's name (metrics label).
        preprocessor: Decodes one image to the backbone's pixels.
        pool: The image decoding pool (not the text tokenizers').
        threads: The pool's size: images decoding at once.
    """

    def __init__(
        self, name: str, preprocessor: ImagePreprocessor, pool: Executor, threads: int
    ) -> None:
        self._preprocessor = preprocessor
        self._pool = pool
        self._batcher: FairBatcher[DecodeTask, np.ndarray] = FairBatcher(
            name,
            self._decode_call,
            CallPolicy(
                plan=_one_per_call,
                cost=lambda tasks: float(sum(task[2] for task in tasks)),
                fits=lambda call, group: False,  # one image a call: tenants alternate by image
                quantum=float(preprocessor.max_pixels),
            ),
            max_in_flight=threads,
            depth_gauge=False,  # the backbone's queue depth is its inference queue's
            trace_name="image_decode",
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)  # shared: idempotent

    async def decode(
        self, tenant: str, tasks: list[DecodeTask], deadline: float | None
    ) -> list[np.ndarray]:
        """Decodes a request's images in turn with other tenants' (InvalidArgument names one)."""
        return await self._batcher.submit(tenant, tasks, deadline)

    async def _decode_call(self, tasks: list[DecodeTask]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return [
            await loop.run_in_executor(self._pool, self._preprocessor.decode, data, where)
            for data, where, _ in tasks
        ]
