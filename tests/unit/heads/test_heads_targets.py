"""Task inference, target encoding and every training-data error with its field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heads import InvalidTrainingData, Task
from heads.targets import encode_targets, infer_task


@pytest.mark.parametrize(
    ("targets", "task"),
    [
        (["a", "b"], Task.CLASSIFICATION),
        ([["a"], ["a", "b"], []], Task.MULTI_LABEL),
        ([("a",), ("b",)], Task.MULTI_LABEL),
        ([1.5, 2.0], Task.REGRESSION),
        ([1, 2.5], Task.REGRESSION),  # ints are values too
    ],
)
def test_infers_task(targets: list[object], task: Task) -> None:
    assert infer_task(targets) is task
    assert encode_targets(targets).task is task


def test_classification_labels_are_sorted_and_indexed() -> None:
    encoded = encode_targets(["pear", "apple", "pear", "fig"])
    assert encoded.labels == ("apple", "fig", "pear")
    assert encoded.y.tolist() == [2, 0, 2, 1]
    assert encoded.y.dtype == np.int64


def test_multi_label_indicator_matrix() -> None:
    encoded = encode_targets([["b", "a"], [], ["c", "c"]])
    assert encoded.labels == ("a", "b", "c")
    assert encoded.y.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_regression_values() -> None:
    encoded = encode_targets([1, 2.5, -3.0])
    assert encoded.labels == ()
    assert encoded.y.dtype == np.float64
    assert encoded.y.tolist() == [1.0, 2.5, -3.0]


def test_subset_keeps_all_labels() -> None:
    encoded = encode_targets(["a", "b", "c"])
    part = encoded.subset(np.array([0, 2]))
    assert part.labels == ("a", "b", "c")
    assert part.y.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("targets", "field"),
    [
        ([], "examples"),
        (["a", "a"], "examples"),  # one class
        ([["a"], ["a"], []], "examples"),  # one label overall
        ([1.0], "examples"),  # one regression example
        (["a", "b", ["c"]], "examples[2]"),  # mixed kinds: first offending index
        ([1.0, "a", ["b"]], "examples[1]"),
        ([["a"], 2.0], "examples[1]"),
        (["a", True], "examples[1]"),  # bool is no value
        (["a", None], "examples[1]"),
        ([b"a", "b"], "examples[0]"),
        (["a", "", "b"], "examples[1].label"),
        ([["a"], ["b", ""]], "examples[1].labels[1]"),
        ([["a"], ["b", 3]], "examples[1].labels[1]"),
        ([1.0, math.nan], "examples[1].value"),
        ([math.inf, 1.0], "examples[0].value"),
        ([1.0, 2.0, -math.inf], "examples[2].value"),
    ],
)
def test_invalid_targets_name_the_field(targets: list[object], field: str) -> None:
    with pytest.raises(InvalidTrainingData) as info:
        encode_targets(targets)
    assert info.value.field == field
    assert info.value.message
    assert field in str(info.value)
