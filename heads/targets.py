"""Training targets: infer the task from what the caller gave and encode it for fitting.

A target is exactly one of: a string label (classification), a sequence of string labels
(multi-label) or a number (regression). Labels are sorted by code point so that the column order
of a head's probabilities, and of its card's ``labels``, never depends on the order of examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from heads.errors import InvalidTrainingData

#: What one example's target may be, as the service hands it over.
Target = str | Sequence[str] | float


class Task(StrEnum):
    """What a head predicts; the string value is the API's and the card's spelling."""

    CLASSIFICATION = "classification"
    MULTI_LABEL = "multi_label"
    REGRESSION = "regression"


@dataclass(frozen=True, eq=False)
class EncodedTargets:
    """Targets in the numeric form estimators take.

    Attributes:
        task: The inferred task.
        labels: Sorted label names (empty for regression); column ``j`` of ``y`` (multi-label) or
            class index ``j`` (classification) is ``labels[j]``.
        y: Classification: int64 class indices, shape (n,). Multi-label: int64 0/1 indicator
            matrix, shape (n, len(labels)). Regression: float64 values, shape (n,).
    """

    task: Task
    labels: tuple[str, ...]
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray) -> EncodedTargets:
        """Returns the targets of the given example indices, keeping the full label list."""
        return EncodedTargets(self.task, self.labels, self.y[indices])


def _kind_of(target: object) -> Task | None:
    # bool is an int subclass; a bool target is almost certainly a client bug, not a value.
    if isinstance(target, str):
        return Task.CLASSIFICATION
    if isinstance(target, bool):
        return None
    if isinstance(target, int | float):
        return Task.REGRESSION
    if isinstance(target, Sequence) and not isinstance(target, bytes | bytearray):
        return Task.MULTI_LABEL
    return None


def infer_task(targets: Sequence[object]) -> Task:
    """Infers the task from the kind of the targets.

    Args:
        targets: One target per example.

    Returns:
        The task every target agrees on.

    Raises:
        InvalidTrainingData: There are no targets (field ``examples``), a target is of no known
            kind, or its kind differs from the first example's (field ``examples[i]``).
    """
    if len(targets) == 0:
        raise InvalidTrainingData("examples", "at least one example is needed")
    task: Task | None = None
    for i, target in enumerate(targets):
        kind = _kind_of(target)
        if kind is None:
            raise InvalidTrainingData(
                f"examples[{i}]",
                "a target must be a label, a list of labels or a number, "
                f"not {type(target).__name__}",
            )
        if task is None:
            task = kind
        elif kind is not task:
            raise InvalidTrainingData(
                f"examples[{i}]",
                f"target is for {kind.value} but earlier examples are for {task.value}; "
                "all examples of one head must have the same kind of target",
            )
    assert task is not None
    return task


def _encode_classification(targets: Sequence[object]) -> EncodedTargets:
    names: list[str] = []
    for i, target in enumerate(targets):
        assert isinstance(target, str)
        if target == "":
            raise InvalidTrainingData(f"examples[{i}].label", "label must not be empty")
        names.append(target)
    labels = tuple(sorted(set(names)))
    if len(labels) < 2:
        raise InvalidTrainingData(
            "examples", f"classification needs at least 2 distinct labels, got {len(labels)}"
        )
    index = {label: j for j, label in enumerate(labels)}
    y = np.fromiter((index[name] for name in names), dtype=np.int64, count=len(names))
    return EncodedTargets(Task.CLASSIFICATION, labels, y)


def _encode_multi_label(targets: Sequence[object]) -> EncodedTargets:
    sets: list[set[str]] = []
    for i, target in enumerate(targets):
        assert isinstance(target, Sequence)
        present: set[str] = set()
        for j, label in enumerate(target):
            if not isinstance(label, str):
                raise InvalidTrainingData(
                    f"examples[{i}].labels[{j}]",
                    f"label must be a string, not {type(label).__name__}",
                )
            if label == "":
                raise InvalidTrainingData(f"examples[{i}].labels[{j}]", "label must not be empty")
            present.add(label)  # a label listed twice is still just present
        sets.append(present)
    labels = tuple(sorted(set().union(*sets)))
    if len(labels) < 2:
        raise InvalidTrainingData(
            "examples", f"multi-label needs at least 2 distinct labels overall, got {len(labels)}"
        )
    index = {label: j for j, label in enumerate(labels)}
    y = np.zeros((len(sets), len(labels)), dtype=np.int64)
    for i, present in enumerate(sets):
        y[i, [index[label] for label in present]] = 1
    return EncodedTargets(Task.MULTI_LABEL, labels, y)


def _encode_regression(targets: Sequence[object]) -> EncodedTargets:
    values = np.empty(len(targets), dtype=np.float64)
    for i, target in enumerate(targets):
        assert isinstance(target, int | float)
        value = float(target)
        if not math.isfinite(value):
            raise InvalidTrainingData(f"examples[{i}].value", "value must be a finite number")
        values[i] = value
    if len(values) < 2:
        raise InvalidTrainingData("examples", "regression needs at least 2 examples")
    return EncodedTargets(Task.REGRESSION, (), values)


def encode_targets(targets: Sequence[object]) -> EncodedTargets:
    """Validates the targets, infers their task and encodes them.

    Args:
        targets: One target per example: ``str`` (classification), a sequence of ``str``
            (multi-label, possibly empty for an example with no label) or a number (regression).

    Returns:
        The encoded targets.

    Raises:
        InvalidTrainingData: With the field at fault: ``examples`` (none, or fewer than two
            distinct labels), ``examples[i]`` (unknown or mixed kind), ``examples[i].label`` /
            ``examples[i].labels[j]`` (empty label) or ``examples[i].value`` (NaN or infinite).
    """
    task = infer_task(targets)
    if task is Task.CLASSIFICATION:
        return _encode_classification(targets)
    if task is Task.MULTI_LABEL:
        return _encode_multi_label(targets)
    return _encode_regression(targets)


def canonical_targets(encoded: EncodedTargets) -> list[object]:
    """Returns the targets in a canonical JSON-able form (used by the card's data hash).

    Classification targets become their label, multi-label targets the sorted list of present
    labels, regression targets their float value.
    """
    if encoded.task is Task.CLASSIFICATION:
        return [encoded.labels[int(k)] for k in encoded.y]
    if encoded.task is Task.MULTI_LABEL:
        return [[encoded.labels[j] for j in np.flatnonzero(row)] for row in encoded.y]
    return [float(v) for v in encoded.y]
