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


def backbone_to_pb(served: ServedBackbone) -> embedding_pb2.Backbone:
    card = served.card
    return embedding_pb2.Backbone(
        name=card.name,
        modality=card.modality,
        dim=card.dim,
        fingerprint=card.fingerprint,
        runtime=served.runtime.kind,
        max_sequence_length=card.max_sequence_length or 0,
        normalized=card.normalized,
        source=f"{card.source.get('model', '')} (PyPI {card.source.get('package', '')}"
        f"=={card.source.get('version', '')})",
    )


def embed_result_to_pb(result: EmbedResult) -> embedding_pb2.EmbedResponse:
    return embedding_pb2.EmbedResponse(
        backbone=result.card.name,
        fingerprint=result.card.fingerprint,
        embeddings=[common_pb2.Embedding(values=row) for row in result.vectors],
        truncated_to=result.truncated_to,
    )
