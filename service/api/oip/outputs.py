"""Predictions and embeddings → output tensors (see `signatures` for what each one holds)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from heads import HeadCard, Prediction
from service.api.oip.signatures import EMBEDDING, LABEL, LABELS, SCORES, VALUE, labels_json
from service.api.oip.tensors import OutputTensor, bytes_tensor, fp32_tensor


def embedding_outputs(vectors: np.ndarray) -> list[OutputTensor]:
    return [fp32_tensor(EMBEDDING, vectors)]


def head_outputs(
    card: HeadCard, predictions: list[Prediction], names: list[str]
) -> list[OutputTensor]:
    """The outputs `names` (of the head's signature) of a head's predictions, in that order.

    Args:
        card: The head version that predicted (its labels order the SCORES columns).
        predictions: One per input, every label's score (top_k 0).
        names: Output names, checked against the head's signature.
    """
    return [_MAKERS[name](card, predictions) for name in names]


def _label(card: HeadCard, predictions: list[Prediction]) -> OutputTensor:
    return bytes_tensor(LABEL, [p.label.encode() for p in predictions])


def _labels(card: HeadCard, predictions: list[Prediction]) -> OutputTensor:
    # One JSON list per input: a BYTES tensor has one element per input, and a label may hold
    # any character, so no separator would be safe.
    return bytes_tensor(
        LABELS, [json.dumps(p.labels, ensure_ascii=False).encode() for p in predictions]
    )


def _scores(card: HeadCard, predictions: list[Prediction]) -> OutputTensor:
    # Predictions rank the scores; the tensor's columns are in the card's labels order, which
    # ModelMetadata lists. The reply lists them too, as the tensor's `labels` parameter: the
    # latest version may change between a ModelMetadata and a ModelInfer, and tritonclient's
    # stubs (without MLServer's extension) cannot read ModelMetadata's parameters.
    column = {label: index for index, label in enumerate(card.labels)}
    scores = np.zeros((len(predictions), len(card.labels)), dtype=np.float32)
    for row, prediction in enumerate(predictions):
        for label, score in prediction.scores:
            scores[row, column[label]] = score
    return fp32_tensor(SCORES, scores, {"labels": labels_json(card.labels)})


def _value(card: HeadCard, predictions: list[Prediction]) -> OutputTensor:
    values = np.array([p.value for p in predictions], dtype=np.float32)
    return fp32_tensor(VALUE, values)


_MAKERS: dict[str, Callable[[HeadCard, list[Prediction]], OutputTensor]] = {
    LABEL: _label,
    LABELS: _labels,
    SCORES: _scores,
    VALUE: _value,
}
