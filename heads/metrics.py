"""Validation metrics, computed on the held-out part only.

Metrics measured on training data would flatter a head; when the validation part is empty the
only metrics reported are the counts (``num_validation`` = 0 says why the rest are missing).
All values are finite floats (they travel in a protobuf map<string, double> and in JSON).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

from heads.contract import MULTI_LABEL_THRESHOLD
from heads.targets import EncodedTargets, Task


def evaluate(scores: np.ndarray, truth: EncodedTargets, num_train: int) -> dict[str, float]:
    """Computes the metrics of a head's outputs on its validation part.

    Args:
        scores: The model's outputs on the validation inputs, in contract shape
            (probabilities (n, n_labels), or values (n,)).
        truth: The validation targets (n examples, possibly 0).
        num_train: Number of examples the evaluated model was fitted on.

    Returns:
        Always ``num_train`` and ``num_validation``. With validation examples, also:
        classification ``accuracy``, ``macro_f1`` and ``support/<label>`` for every label;
        multi-label ``micro_f1``, ``macro_f1``, ``subset_accuracy`` and ``support/<label>``;
        regression ``mae``, and ``r2`` given at least two validation examples.
    """
    n = len(truth)
    metrics: dict[str, float] = {"num_train": float(num_train), "num_validation": float(n)}
    if n == 0:
        return metrics
    if truth.task is Task.CLASSIFICATION:
        predicted = scores.argmax(axis=1)
        metrics["accuracy"] = float(accuracy_score(truth.y, predicted))
        # Averaged over the classes seen in truth or predictions; a class absent from both says
        # nothing about the head.
        metrics["macro_f1"] = float(f1_score(truth.y, predicted, average="macro", zero_division=0))
        counts = np.bincount(truth.y, minlength=len(truth.labels))
        metrics.update(
            {f"support/{lab}": float(c) for lab, c in zip(truth.labels, counts, strict=True)}
        )
    elif truth.task is Task.MULTI_LABEL:
        predicted = (scores > MULTI_LABEL_THRESHOLD).astype(np.int64)
        # F1 divides by zero only when a label is absent from truth and predictions alike: the
        # head got it exactly right, which is worth 1, not 0.
        metrics["micro_f1"] = float(f1_score(truth.y, predicted, average="micro", zero_division=1))
        metrics["macro_f1"] = float(f1_score(truth.y, predicted, average="macro", zero_division=1))
        metrics["subset_accuracy"] = float(accuracy_score(truth.y, predicted))
        counts = truth.y.sum(axis=0)
        metrics.update(
            {f"support/{lab}": float(c) for lab, c in zip(truth.labels, counts, strict=True)}
        )
    else:
        metrics["mae"] = float(mean_absolute_error(truth.y, scores))
        if n >= 2:  # R^2 of a single point is undefined
            metrics["r2"] = float(r2_score(truth.y, scores))
    return metrics


def confusion_matrix(scores: np.ndarray, truth: EncodedTargets) -> list[list[int]]:
    """Counts of a classification head's validation outcomes: row i, column j holds how many
    examples of label i it predicted as label j (rows and columns in `truth.labels` order).

    Empty for other tasks and for an empty validation part: there is nothing to count.
    """
    if truth.task is not Task.CLASSIFICATION or len(truth) == 0:
        return []
    n = len(truth.labels)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (truth.y, scores.argmax(axis=1)), 1)
    return counts.tolist()
