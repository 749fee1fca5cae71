"""What a backbone costs per input, relative to the others: its compute weights.

A backbone's compute grows with the weights its matrix products and convolutions multiply by for
every token or pixel; lookup tables (token embeddings: `Gather` nodes, or their fused `EmbedLayerNormalization`) cost nothing per input
however large they are. The count is taken from the ONNX graph once, at export (the card keeps it
under `export.compute_weights`), or from the model file for an export made before that.
ListBackbones and GetHead report it relative to the cheapest served backbone of the same
modality: a fused head costs the sum of its parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from service.backbones.card import BackboneCard, model_path

COMPUTE_WEIGHTS = "compute_weights"
# (Q)EmbedLayerNormalization: ONNX Runtime's fused token, position and segment lookups.
_LOOKUPS = frozenset(
    {"Gather", "GatherElements", "GatherND", "EmbedLayerNormalization", "QEmbedLayerNormalization"}
)
_CONVERSIONS = frozenset({"DequantizeLinear", "Cast", "Identity"})


def compute_weights(model: onnx.ModelProto) -> int:
    """The number of initializer elements used by anything but a lookup (followed through the
    nodes that only convert a table for it: an int8 export dequantizes its embeddings)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def lookup_only(name: str, depth: int = 0) -> bool:
        nodes = consumers.get(name, [])
        return bool(nodes) and all(
            node.op_type in _LOOKUPS
            or (
                node.op_type in _CONVERSIONS
                and depth < len(_CONVERSIONS)
                and all(lookup_only(out, depth + 1) for out in node.output)
            )
            for node in nodes
        )

    return int(
        sum(
            np.prod(tensor.dims, dtype=np.int64)
            for tensor in model.graph.initializer
            if tensor.name in consumers and not lookup_only(tensor.name)
        )
    )


def card_compute_weights(card: BackboneCard, folder: Path) -> int:
    """The card's count, or the model file's for a card written before exports recorded it."""
    recorded = card.export.get(COMPUTE_WEIGHTS)
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return compute_weights(onnx.load(model_path(folder)))


def relative_costs(backbones: Iterable[tuple[str, str, int]]) -> dict[str, float]:
    """(name, modality, compute weights) → each backbone's weights over the smallest of its
    modality's (the cheapest is 1.0), rounded to two decimals."""
    rows = list(backbones)
    cheapest: dict[str, int] = {}
    for _, modality, weights in rows:
        cheapest[modality] = min(cheapest.get(modality, weights), weights)
    return {
        name: round(weights / max(cheapest[modality], 1), 2) for name, modality, weights in rows
    }
