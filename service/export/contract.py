"""What every exported backbone graph shares with the gateway: opset, input tensors, output name.

The inputs are the serving modalities' own definitions (`TEXT_TENSORS`, `image_tensors(size)`:
names, numpy dtypes, dims after the batch axis), so that the traced graph, its config.pbtxt and
what the gateway sends cannot drift apart. The exporter imports serving code; never the reverse.
"""

from __future__ import annotations

from service.backbones.card import BackboneCard
from service.backbones.modalities.tensors import (
    IMAGE_PIXELS,
    TEXT_TENSORS,
    TensorSpec,
    image_tensors,
)

#: Default-domain ONNX opset of every exported backbone graph (heads have their own, in
#: heads/contract.py).
OPSET = 17
#: The one output of every backbone graph: float32 [batch, dim].
OUTPUT_NAME = "embedding"
#: A text graph's inputs, in the order the graph takes them.
TEXT_INPUT_NAMES = list(TEXT_TENSORS)
#: An image graph's one input.
IMAGE_INPUT_NAME = IMAGE_PIXELS


def input_tensors(card: BackboneCard) -> dict[str, TensorSpec]:
    """The tensors the gateway sends a backbone of this card, as its modality defines them."""
    if card.modality == "text":
        return dict(TEXT_TENSORS)
    if card.modality == "image" and card.image_size:
        return image_tensors(card.image_size)
    raise ValueError(f"{card.name}: no input tensors for modality {card.modality!r}")


def dynamic_axes(tensors: dict[str, TensorSpec]) -> dict[str, dict[int, str]]:
    """torch.onnx.export's dynamic axes: the batch axis of every input and of the output, and
    each input axis whose dims are -1 (any length: the sequence axis of text)."""
    axes: dict[str, dict[int, str]] = {}
    for name, spec in tensors.items():
        free = [axis for axis, size in enumerate(spec.dims, start=1) if size == -1]
        axes[name] = {0: "batch", **{axis: _axis_name(axis, len(free)) for axis in free}}
    axes[OUTPUT_NAME] = {0: "batch"}
    return axes


def _axis_name(axis: int, free_axes: int) -> str:
    return "sequence" if free_axes == 1 else f"axis{axis}"
