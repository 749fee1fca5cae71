"""The image modality: checks from the bytes, pixel costs from the header, decoding on the image
pool (tenants in turn), and calls of equal-sized images."""

from __future__ import annotations

from typing import Any

import numpy as np

from heads import RawInputs
from heads.transfer import downscale
from service.backbones.batcher import CallPolicy
from service.backbones.inputs import ImageInput, Input, check_image
from service.backbones.modalities.base import Batching, Prepared
from service.backbones.modalities.image_decoding import ImageDecoder
from service.backbones.modalities.image_preprocessing import (
    ImagePreprocessor,
    collate_images,
    plan_image_batches,
)
from service.backbones.modalities.tensors import TensorSpec, image_tensors
from service.backbones.runtimes.base import RuntimeNeeds


class ImageModality:
    """An image backbone's inputs: decoded on the shared image pool, costed in declared pixels.

    Args:
        backbone: The backbone's name (error messages).
        preprocessor: Checks and decodes one image to the backbone's pixels.
        decoder: The image pool's turns for this backbone.
    """

    unit = "pixels"

    def __init__(
        self, backbone: str, preprocessor: ImagePreprocessor, decoder: ImageDecoder
    ) -> None:
        self._backbone = backbone
        self.preprocessor = preprocessor
        self._decoder = decoder

    def check(self, item: Input, where: str) -> None:
        self.preprocessor.check(check_image(item, self._backbone, where), where)

    def costs(self, inputs: list[Input]) -> list[int]:
        # Each image's cost is its declared pixels, read once from its header.
        return [self.preprocessor.declared_pixels(_data(item)) for item in inputs]

    async def prepare(
        self,
        inputs: list[Input],
        wheres: list[str],
        costs: list[int],
        tenant: str,
        deadline: float | None,
    ) -> Prepared:
        tasks = [
            (_data(item), where, cost)
            for item, where, cost in zip(inputs, wheres, costs, strict=True)
        ]
        pixels = await self._decoder.decode(tenant, tasks, deadline)
        return Prepared(list(pixels), [0] * len(pixels))

    async def baseline_inputs(
        self, inputs: list[Input], wheres: list[str], costs: list[int], tenant: str
    ) -> RawInputs:
        # Decoded a second time, not kept from `prepare`: the embedding path hands its pixels
        # to the runtime and keeps nothing, and a job's decoding costs little next to inference.
        tasks = [
            (_data(item), where, cost)
            for item, where, cost in zip(inputs, wheres, costs, strict=True)
        ]
        pixels = await self._decoder.decode(tenant, tasks, None)
        return RawInputs("pixels", pixels=np.stack([downscale(image) for image in pixels]))

    def tensors(self) -> dict[str, TensorSpec]:
        return image_tensors(self.preprocessor.image_size)

    def batching(self, needs: RuntimeNeeds) -> Batching:
        def plan(items: list[Any]) -> list[list[int]]:
            return plan_image_batches(len(items), max(1, needs.max_batch_size()))

        def fits(call: list[Any], group: list[Any]) -> bool:
            return needs.merges and len(call) + len(group) <= needs.max_batch_size()

        # Every image of a backbone has the same size: a call costs its images.
        calls = CallPolicy(plan, len, fits, float(needs.full_call_items))
        return Batching(calls, collate_images, self._warm_up_calls)

    def _warm_up_calls(self) -> list[list[Any]]:
        """One call of one (black) image: every call has the same shape bar the batch axis, so
        one call loads the model; a full batch of images would cost seconds at each start."""
        size = self.preprocessor.image_size
        return [[np.zeros((size, size, 3), dtype=np.uint8)]]

    def start(self) -> None:
        self._decoder.start()

    async def close(self) -> None:
        await self._decoder.close()


def _data(item: Input) -> bytes:
    assert isinstance(item, ImageInput), "checked by ImageModality.check first"
    return item.data
