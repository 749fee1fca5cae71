"""The validation confusion matrix: counted like scikit-learn counts it, kept in the card."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from heads import HeadCard, HeadFormatError, Task
from heads.metrics import confusion_matrix
from heads.targets import encode_targets
from tests.unit.heads.test_heads_card import _card


def test_counts_match_scikit_learn_with_labels_in_card_order() -> None:
    rng = np.random.default_rng(7)
    truth = encode_targets(list(rng.choice(["b", "a", "c", "d"], size=200)))
    scores = rng.random((200, len(truth.labels)))
    matrix = confusion_matrix(scores, truth)
    expected = sklearn_confusion_matrix(
        truth.y, scores.argmax(axis=1), labels=range(len(truth.labels))
    )
    assert matrix == expected.tolist()
    assert sum(map(sum, matrix)) == 200 and truth.labels == ("a", "b", "c", "d")


def test_a_label_never_seen_in_validation_still_has_its_row_and_column() -> None:
    truth = encode_targets(["x", "y", "z"]).subset(np.array([0, 1]))
    scores = np.array([[0.1, 0.2, 0.7], [0.1, 0.8, 0.1]])
    assert confusion_matrix(scores, truth) == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_no_matrix_without_classes_or_validation_examples() -> None:
    values = encode_targets([1.0, 2.0, 3.0])
    assert confusion_matrix(np.array([1.0, 2.0, 3.0]), values) == []
    several = encode_targets([["a"], ["a", "b"]])
    assert confusion_matrix(np.array([[0.9, 0.1], [0.8, 0.7]]), several) == []
    empty = encode_targets(["a", "b"]).subset(np.array([], dtype=np.int64))
    assert confusion_matrix(np.empty((0, 2)), empty) == []


def test_the_card_keeps_it_and_an_empty_one_writes_no_key() -> None:
    matrix = [[3, 1], [0, 4]]
    card = _card(confusion_matrix=matrix)
    assert HeadCard.from_json(card.to_json()) == card and card.confusion_matrix == matrix
    assert "confusion_matrix" not in json.loads(_card().to_json())


@pytest.mark.parametrize(
    "matrix", [[[1, 2]], [[1, 2], [3]], [[1, 2, 3], [4, 5, 6]], [[1, -1], [0, 0]]]
)
def test_a_matrix_that_does_not_fit_the_labels_is_refused(matrix: list[list[int]]) -> None:
    with pytest.raises(HeadFormatError, match="confusion_matrix"):
        _card(confusion_matrix=matrix)


def test_a_regression_card_has_none() -> None:
    card = _card(task=Task.REGRESSION, labels=[], metrics={"mae": 1.0})
    assert card.confusion_matrix == []
