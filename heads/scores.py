"""The one score each task is compared by (negative transfer, the choice of kind), in plain numpy.

Not sklearn.metrics: the transfer check's bootstrap scores thousands of resamples, and sklearn's
input checks cost far more than the arithmetic. The values equal sklearn's (unit-tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from heads.contract import MULTI_LABEL_THRESHOLD
from heads.targets import Task


def _accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(truth == predicted))


def _micro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    true_positives = float(np.sum((truth == 1) & (predicted == 1)))
    wrong = float(np.sum(truth != predicted))
    # Nothing to find and nothing found is perfect (scikit-learn's zero_division=1).
    return 1.0 if true_positives + wrong == 0 else 2 * true_positives / (2 * true_positives + wrong)


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    residual = float(np.sum((truth - predicted) ** 2))
    total = float(np.sum((truth - truth.mean()) ** 2))
    # A constant truth: perfect or nothing (scikit-learn's force_finite).
    return (1.0 if residual == 0 else 0.0) if total == 0 else 1.0 - residual / total


#: Each task's score, higher is better, on (truth, predictions).
TASK_SCORES: dict[Task, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    Task.CLASSIFICATION: ("accuracy", _accuracy),
    Task.MULTI_LABEL: ("micro_f1", _micro_f1),
    Task.REGRESSION: ("r2", _r2),
}


def predictions(scores: np.ndarray, task: Task) -> np.ndarray:
    """A head's contract-shaped outputs (probabilities or values) as predictions."""
    if task is Task.CLASSIFICATION:
        return scores.argmax(axis=1)
    if task is Task.MULTI_LABEL:
        return (scores > MULTI_LABEL_THRESHOLD).astype(np.int64)
    return scores
