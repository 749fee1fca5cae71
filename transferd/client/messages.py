"""Request builders and reply readers shared by `Client` and `AsyncClient`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transferd.client.types import Example, Prediction
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2


def inputs(
    texts: Sequence[str] | None = None,
    images: Sequence[bytes] | None = None,
    embeddings: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> list[common_pb2.Input]:
    """Exactly one of texts, images or embeddings, as Input messages.

    Raises:
        ValueError: none or several of them given.
    """
    given = [kind for kind in (texts, images, embeddings) if kind is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of texts=, images= or embeddings=")
    if texts is not None:
        return [common_pb2.Input(text=text) for text in texts]
    if images is not None:
        return [common_pb2.Input(image=bytes(image)) for image in images]
    assert embeddings is not None
    return [
        common_pb2.Input(embedding=common_pb2.Embedding(values=[float(v) for v in row]))
        for row in embeddings
    ]


def embed_request(backbone: str, items: list[common_pb2.Input]) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(backbone=backbone, inputs=items)


def vectors(reply: embedding_pb2.EmbedResponse) -> np.ndarray:
    """The reply's embeddings as one float32 array, a row per input."""
    return np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)


def predict_request(
    head: str,
    version: int,
    top_k: int,
    texts: Sequence[str] | None,
    images: Sequence[bytes] | None,
    embeddings: Sequence[Sequence[float]] | np.ndarray | None,
) -> heads_pb2.PredictRequest:
    return heads_pb2.PredictRequest(
        head=head,
        version=version,
        inputs=inputs(texts=texts, images=images, embeddings=embeddings),
        top_k=top_k,
    )


def predictions(reply: heads_pb2.PredictResponse) -> list[Prediction]:
    return [Prediction.of(p) for p in reply.predictions]


def example(item: Example) -> heads_pb2.Example:
    (single,) = inputs(
        texts=None if item.text is None else [item.text],
        images=None if item.image is None else [item.image],
        embeddings=None if item.embedding is None else [item.embedding],
    )
    message = heads_pb2.Example(input=single)
    if item.label is not None:
        message.label = item.label
    if item.labels is not None:
        message.labels.extend(item.labels)
    if item.value is not None:
        message.value = item.value
    return message


def train_request(
    name: str,
    examples: Sequence[Example],
    backbone: str,
    kind: str,
    params: dict[str, str] | None,
    validation_fraction: float | None,
) -> heads_pb2.TrainHeadRequest:
    request = heads_pb2.TrainHeadRequest(
        head=name,
        backbone=backbone,
        kind=kind,
        examples=[example(item) for item in examples],
        params=params or {},
    )
    if validation_fraction is not None:
        request.validation_fraction = validation_fraction
    return request
