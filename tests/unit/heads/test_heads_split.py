"""The train/validation split keeps every class in training and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from heads.split import split_indices
from heads.targets import encode_targets


def _check_partition(n: int, train: np.ndarray, val: np.ndarray) -> None:
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, unique
    assert sorted(train.tolist() + val.tolist()) == list(range(n))


def test_classification_is_stratified_and_keeps_every_class() -> None:
    # 40 a, 10 b, 2 c, 1 d (a singleton class).
    targets = encode_targets(["a"] * 40 + ["b"] * 10 + ["c"] * 2 + ["d"])
    train, val = split_indices(targets, 0.5)
    _check_partition(len(targets), train, val)
    y = targets.y
    assert set(y[train].tolist()) == {0, 1, 2, 3}
    assert np.bincount(y[val], minlength=4).tolist() == [20, 5, 1, 0]


@pytest.mark.parametrize("fraction", [0.2, 0.9])
def test_every_class_keeps_a_training_example(fraction: float) -> None:
    labels = [f"c{i}" for i in range(12) for _ in range(i + 1)]  # class sizes 1..12
    targets = encode_targets(labels)
    train, val = split_indices(targets, fraction)
    _check_partition(len(targets), train, val)
    assert set(targets.y[train].tolist()) == set(range(12))
    assert len(val) > 0


def test_split_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    targets = encode_targets([f"c{k}" for k in rng.integers(0, 5, size=200)])
    first = split_indices(targets, 0.3)
    second = split_indices(targets, 0.3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = split_indices(targets, 0.3, seed=1)
    assert not np.array_equal(first[1], other_seed[1])


def test_fraction_zero_or_tiny_data_gives_empty_validation() -> None:
    targets = encode_targets(["a", "b", "a", "b"])
    train, val = split_indices(targets, 0.0)
    assert len(val) == 0 and len(train) == 4
    train, val = split_indices(encode_targets(["a", "b"]), 0.9)
    assert len(val) == 0 and len(train) == 2


def test_multi_label_keeps_every_label_in_training() -> None:
    # "rare" occurs on 2 examples only; with 90% held out it would likely vanish from training.
    raw = [["x"]] * 30 + [["y"]] * 30 + [["rare", "x"], ["rare"]]
    targets = encode_targets(raw)
    for seed in range(20):
        train, val = split_indices(targets, 0.9, seed=seed)
        _check_partition(len(targets), train, val)
        assert np.all(targets.y[train].sum(axis=0) > 0)


def test_regression_keeps_two_training_examples() -> None:
    targets = encode_targets([1.0, 2.0, 3.0])
    train, val = split_indices(targets, 0.9)
    _check_partition(3, train, val)
    assert len(train) == 2 and len(val) == 1
    train, val = split_indices(encode_targets([float(i) for i in range(100)]), 0.25)
    assert len(val) == 25


def test_rare_aware_kfold_puts_rare_classes_in_every_fold() -> None:
    from heads.kinds.tuning import RareAwareKFold

    y = np.array([0] * 9 + [1] + [2] * 2 + [3] * 6)
    folds = list(RareAwareKFold(3).split(np.zeros(len(y)), y))
    assert len(folds) == 3
    rare = set(np.flatnonzero(y == 1)) | set(np.flatnonzero(y == 2))
    tested = []
    for train, test in folds:
        assert rare <= set(train.tolist()) and rare <= set(test.tolist())
        assert set(y[train].tolist()) == {0, 1, 2, 3}  # every fold's classifier knows all classes
        tested += [i for i in test.tolist() if i not in rare]
    assert sorted(tested) == sorted(set(range(len(y))) - rare)  # the rest is tested once
    only_rare = list(RareAwareKFold(3).split(np.zeros(3), np.array([0, 1, 1])))
    assert len(only_rare) == 1 and only_rare[0][0].tolist() == only_rare[0][1].tolist() == [0, 1, 2]
