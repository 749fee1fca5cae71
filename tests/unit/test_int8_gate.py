"""The int8 accuracy gate's arithmetic: what passes, and every bound that refuses a variant."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from service.export import int8_gate
from service.export.verify import ExportVerificationError


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight labelled clusters of unit vectors in 32 dimensions, 30 points each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, 32))
    labels = np.repeat(np.arange(8), 30)
    points = centres[labels] + 0.9 * rng.standard_normal((len(labels), 32))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def test_a_faithful_variant_passes_and_its_figures_are_recorded() -> None:
    vectors, labels = _clusters()
    noisy = vectors + 0.01 * np.random.default_rng(1).standard_normal(vectors.shape)
    report = int8_gate.measure(vectors, noisy.astype(np.float32), labels)
    int8_gate.check(report)
    assert report.texts == 240 and report.labels == 8 and report.min_cosine > 0.99
    card = report.as_card()
    assert card["int8_lr_accuracy"] == round(report.int8_lr_accuracy, 4)


def test_a_broken_graph_fails_on_cosine_and_on_accuracy() -> None:
    """Rows that no longer belong to their inputs (a broken graph): every bound is named."""
    vectors, labels = _clusters()
    shuffled = vectors[np.random.default_rng(2).permutation(len(vectors))]
    with pytest.raises(ExportVerificationError) as refused:
        int8_gate.check(int8_gate.measure(vectors, shuffled, labels))
    message = str(refused.value)
    assert "worst cosine" in message and "logistic-regression" in message and "5-NN" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"int8_lr_accuracy": 0.689}, "logistic-regression accuracy 0.6890"),
        ({"int8_knn_accuracy": 0.679}, "5-NN accuracy 0.6790"),
        ({"min_cosine": 0.79}, "worst cosine to the float model 0.7900"),
        ({"min_cosine": float("nan")}, "worst cosine"),
    ],
)
def test_each_tolerance_is_a_bound(change: dict[str, float], named: str) -> None:
    """LR may drop one point, kNN two, the cosine floor is 0.80; just past each is refused."""
    at_the_bounds = int8_gate.GateReport(
        texts=100, labels=5, float_lr_accuracy=0.70, int8_lr_accuracy=0.69,
        float_knn_accuracy=0.70, int8_knn_accuracy=0.68, min_cosine=0.80, mean_cosine=0.9,
    )  # fmt: skip
    int8_gate.check(at_the_bounds)
    with pytest.raises(ExportVerificationError, match=named):
        int8_gate.check(dataclasses.replace(at_the_bounds, **change))
