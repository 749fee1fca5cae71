"""LoadedHead: integrity checks on load, predictions for every task."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from heads import (
    HeadCard,
    HeadFormatError,
    InvalidInput,
    LoadedHead,
    Prediction,
    Task,
    TrainedHead,
    TrainingSummary,
    train_head,
)
from tests.unit.heads.synthetic import blobs, class_targets, multi_label_targets, regression_targets

X, Y = blobs(120, 4, seed=21)


def _card(head: TrainedHead) -> HeadCard:
    return head.to_card(tenant="t", name="h", version=1, backbone="b", backbone_fingerprint="f")


def replace(card: HeadCard, **changes: object) -> HeadCard:
    """A validated copy of `card` with `changes`."""
    return HeadCard(**{**dict(card), **changes})


@pytest.fixture(scope="module")
def classifier() -> TrainedHead:
    return train_head("logistic_regression", X, class_targets(Y))


@pytest.fixture(scope="module")
def multi_label() -> TrainedHead:
    return train_head("knn", X, multi_label_targets(Y))


@pytest.fixture(scope="module")
def regressor() -> TrainedHead:
    return train_head("ridge", X, regression_targets(Y))


def test_to_card_carries_what_heads_knows(classifier: TrainedHead) -> None:
    card = _card(classifier)
    assert card.kind == "logistic_regression" and card.task is Task.CLASSIFICATION
    assert card.labels == ["class_0", "class_1", "class_2", "class_3"]
    assert card.onnx_sha256 == hashlib.sha256(classifier.onnx_bytes).hexdigest()
    assert card.num_examples == 120 and card.embedding_dim == X.shape[1]
    assert card.params == classifier.summary.params
    assert card.metrics == classifier.summary.metrics
    assert {k: getattr(card, k) for k in TrainingSummary.model_fields} == dict(classifier.summary)
    assert HeadCard.from_json(card.to_json()) == card


def test_rejects_bytes_whose_sha256_differs(classifier: TrainedHead) -> None:
    card = _card(classifier)
    tampered = bytearray(classifier.onnx_bytes)
    tampered[-1] ^= 1
    with pytest.raises(HeadFormatError, match="SHA-256"):
        LoadedHead.from_bytes(card, bytes(tampered))


def test_rejects_unloadable_bytes_even_with_matching_hash(classifier: TrainedHead) -> None:
    garbage = b"definitely not onnx"
    card = replace(_card(classifier), onnx_sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(HeadFormatError, match="does not load"):
        LoadedHead.from_bytes(card, garbage)


def test_rejects_card_that_does_not_fit_the_graph(
    classifier: TrainedHead, regressor: TrainedHead
) -> None:
    card = _card(classifier)
    with pytest.raises(HeadFormatError):
        LoadedHead.from_bytes(replace(card, embedding_dim=512), classifier.onnx_bytes)
    with pytest.raises(HeadFormatError):
        # (the confusion matrix goes too: the card itself refuses one that misfits its labels)
        wrong_labels = replace(card, labels=["x", "y"], confusion_matrix=[])
        LoadedHead.from_bytes(wrong_labels, classifier.onnx_bytes)
    wrong_task = replace(card, task=Task.REGRESSION, labels=[], confusion_matrix=[])
    with pytest.raises(HeadFormatError):
        LoadedHead.from_bytes(wrong_task, classifier.onnx_bytes)
    regression_card = _card(regressor)
    with pytest.raises(HeadFormatError):
        LoadedHead.from_bytes(
            replace(regression_card, onnx_sha256=card.onnx_sha256), classifier.onnx_bytes
        )


def test_classification_top_k(classifier: TrainedHead) -> None:
    head = LoadedHead.from_bytes(_card(classifier), classifier.onnx_bytes)
    assert head.size_bytes == len(classifier.onnx_bytes)
    full = head.predict(X[:6], top_k=0)
    assert [p.label for p in full] == class_targets(Y[:6])
    for p in full:
        assert len(p.scores) == 4 and p.labels == [] and p.value is None
        probabilities = [s for _, s in p.scores]
        assert probabilities == sorted(probabilities, reverse=True)
        assert p.scores[0][0] == p.label
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    two = head.predict(X[:6], top_k=2)
    assert [p.scores for p in two] == [p.scores[:2] for p in full]
    # Same rows in another batch size: the same ranking, scores equal up to float32 rounding.
    for alone in (head.predict(X[:1], top_k=10)[0], head.predict(X[:1])[0]):  # default: all
        assert [lab for lab, _ in alone.scores] == [lab for lab, _ in full[0].scores]
        assert [s for _, s in alone.scores] == pytest.approx([s for _, s in full[0].scores])


def test_multi_label_threshold(multi_label: TrainedHead) -> None:
    head = LoadedHead.from_bytes(_card(multi_label), multi_label.onnx_bytes)
    predictions = head.predict(X[:20], top_k=1)
    for p, truth in zip(predictions, multi_label_targets(Y[:20]), strict=True):
        assert len(p.scores) == 1 and p.scores[0][0] == p.label
        assert sorted(p.labels) == sorted(truth)
    everything = head.predict(X[:20])
    for p in everything:
        assert p.labels == [label for label, score in p.scores if score > 0.5]


def test_regression_value(regressor: TrainedHead) -> None:
    head = LoadedHead.from_bytes(_card(regressor), regressor.onnx_bytes)
    predictions = head.predict(X[:10], top_k=3)
    truth = regression_targets(Y[:10])
    for p, t in zip(predictions, truth, strict=True):
        assert p.label == "" and p.scores == [] and p.labels == []
        assert isinstance(p.value, float) and abs(p.value - t) < 1.0


def test_bad_inputs(classifier: TrainedHead) -> None:
    head = LoadedHead.from_bytes(_card(classifier), classifier.onnx_bytes)
    for bad in (X[:2, :100], X[0], np.full((1, X.shape[1]), np.nan, dtype=np.float32)):
        with pytest.raises(InvalidInput) as info:
            head.predict(bad)
        assert info.value.field == "inputs"
        assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInput) as info:
        head.predict(X[:1], top_k=-1)
    assert info.value.field == "top_k"
    assert head.predict(np.empty((0, X.shape[1]), dtype=np.float32)) == []
    # float64 input is accepted and used as float32.
    assert head.predict(X[:2].astype(np.float64))[0].label == head.predict(X[:2])[0].label


def test_prediction_defaults() -> None:
    assert Prediction() == Prediction(label="", scores=[], labels=[], value=None)
