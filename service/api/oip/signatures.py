"""Which tensors each model takes and returns: one description for ModelMetadata and ModelInfer.

A backbone takes TEXT or IMAGE, after its modality, and returns EMBEDDING. A head takes its
backbone's TEXT or IMAGE, or EMBEDDING (vectors of that backbone), and returns

- classification: LABEL (the most likely label) and SCORES (every label's probability, columns
  in the head's labels order);
- multi-label: LABEL, LABELS (the labels above 0.5, best first, as a JSON list per input) and
  SCORES (each label's own probability);
- regression: VALUE.

SCORES carries the labels, in column order, as its `labels` parameter (a JSON list): in
ModelMetadata (MLServer's extension, beside the model's own `labels` parameter) and in every
ModelInfer reply (the protocol's output parameters, which tritonclient reads too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from heads import HeadCard, Task
from service.backbones.card import BackboneCard

BYTES, FP32 = "BYTES", "FP32"
#: A dimension of any size: the batch, one element (or row) per input.
BATCH = -1

TEXT, IMAGE, EMBEDDING = "TEXT", "IMAGE", "EMBEDDING"
LABEL, LABELS, SCORES, VALUE = "LABEL", "LABELS", "SCORES", "VALUE"

#: The input tensor of each backbone modality: its elements are encoded texts or images.
INPUT_OF_MODALITY = {"text": TEXT, "image": IMAGE}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor a model takes or returns.

    Attributes:
        name: The tensor's name, e.g. TEXT.
        datatype: BYTES or FP32.
        shape: Its dimensions, BATCH for the number of inputs.
        parameters: What more ModelMetadata says about it (SCORES: its labels, as JSON).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)


def labels_json(labels: list[str]) -> str:
    """Labels as ModelMetadata's `labels` parameters list them (non-ASCII kept as is)."""
    return json.dumps(labels, ensure_ascii=False)


def backbone_signature(card: BackboneCard) -> Signature:
    return Signature(
        inputs=(TensorSpec(INPUT_OF_MODALITY[card.modality], BYTES, (BATCH,)),),
        outputs=(TensorSpec(EMBEDDING, FP32, (BATCH, card.dim)),),
    )


def head_signature(card: HeadCard, modality: str | None) -> Signature:
    """The tensors of a head version.

    Args:
        card: The version's card.
        modality: Of the head's backbone; None when that backbone cannot serve the head (not
            served, or exported again since): only EMBEDDING is listed then.
    """
    raw = () if modality is None else (TensorSpec(INPUT_OF_MODALITY[modality], BYTES, (BATCH,)),)
    inputs = (*raw, TensorSpec(EMBEDDING, FP32, (BATCH, card.embedding_dim)))
    if card.task is Task.REGRESSION:
        return Signature(inputs, (TensorSpec(VALUE, FP32, (BATCH,)),))
    label = TensorSpec(LABEL, BYTES, (BATCH,))
    scores = TensorSpec(
        SCORES, FP32, (BATCH, len(card.labels)), {"labels": labels_json(card.labels)}
    )
    if card.task is Task.MULTI_LABEL:
        return Signature(inputs, (label, TensorSpec(LABELS, BYTES, (BATCH,)), scores))
    return Signature(inputs, (label, scores))
