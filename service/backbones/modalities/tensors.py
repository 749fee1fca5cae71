"""The tensors a backbone's graph takes, by modality: the one definition that the gateway's
collate functions, the Triton metadata check and the exporter (graphs and config.pbtxt) share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One model input as the gateway sends it: its dtype and its dims after the batch axis
    (-1: any length)."""

    dtype: np.dtype
    dims: tuple[int, ...]


TEXT_IDS = "input_ids"
TEXT_MASK = "attention_mask"
IMAGE_PIXELS = "pixels"

# A text backbone's graph takes token ids and their mask, int64 [batch, any length].
TEXT_TENSORS = {
    TEXT_IDS: TensorSpec(np.dtype(np.int64), (-1,)),
    TEXT_MASK: TensorSpec(np.dtype(np.int64), (-1,)),
}


def image_tensors(image_size: int) -> dict[str, TensorSpec]:
    """What an image backbone's graph takes: uint8 RGB pixels [batch, size, size, 3] (the graph
    casts, normalises and transposes them itself)."""
    return {IMAGE_PIXELS: TensorSpec(np.dtype(np.uint8), (image_size, image_size, 3))}
