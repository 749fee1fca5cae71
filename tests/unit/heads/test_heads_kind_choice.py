"""kind "auto": candidates scored on the same folds, the best chosen, every score recorded."""

from __future__ import annotations

import numpy as np
import pytest

from heads import AUTO_KIND, HeadCard, InvalidParams, check_request, train_head
from heads.budget import DEFAULT_COST_CAPS, check_cost, estimate_cost
from heads.kind_choice import choose_kind, equals_of_the_best, folds
from heads.kinds import candidate_kinds, get_kind
from heads.targets import Task, encode_targets
from tests.unit.heads.synthetic import blobs, class_targets

LINEAR_AND_KNN = [get_kind(name) for name in ("logistic_regression", "linear_svm", "knn")]


def xor(n: int = 160, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Four tight clusters at the corners of a square; opposite corners share a label, so no
    line (or hyperplane: the other 14 coordinates are noise) separates the labels."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, (n, 2))
    x = np.zeros((n, 16), dtype=np.float32)
    x[:, :2] = corners * 2.0 - 1.0
    x += rng.normal(0, 0.1, x.shape).astype(np.float32)
    return x, ["same" if a == b else "different" for a, b in corners]


def test_a_task_no_line_separates_chooses_knn_and_records_every_candidate() -> None:
    x, labels = xor()
    chosen, params, scores = choose_kind(x, encode_targets(labels), candidates=LINEAR_AND_KNN)
    assert chosen.name == "knn" and "n_neighbors" in params
    assert [s.kind for s in scores] == ["logistic_regression", "linear_svm", "knn"]
    assert [s.chosen for s in scores] == [False, False, True]
    best = max(scores, key=lambda s: s.cv_score)
    assert best.kind == "knn" and best.cv_score >= 0.95
    assert all(0.0 <= s.cv_std <= 0.5 for s in scores)


def test_a_tie_goes_to_the_earlier_candidate_the_default_first() -> None:
    x, y = blobs(60, 3, noise=0.05)
    chosen, _, scores = choose_kind(x, encode_targets(class_targets(y)), candidates=LINEAR_AND_KNN)
    assert all(s.cv_score == 1.0 for s in scores)
    assert chosen.name == "logistic_regression" and scores[0].chosen


def test_progress_moves_once_per_candidate() -> None:
    x, y = blobs(40, 2)
    seen: list[float] = []
    choose_kind(x, encode_targets(class_targets(y)), seen.append, LINEAR_AND_KNN)
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_a_training_part_too_small_to_fold_gets_the_default_kind() -> None:
    x, y = blobs(5, 2)
    targets = encode_targets(["a", "b", "b", "b", "b"])
    assert folds(targets) == []
    chosen, _, scores = choose_kind(x, targets, candidates=LINEAR_AND_KNN)
    assert chosen.name == "logistic_regression" and scores == []


def test_folds_are_stratified_and_the_same_for_every_call() -> None:
    targets = encode_targets(class_targets(np.arange(30) % 3))
    first, second = folds(targets), folds(targets)
    assert len(first) == 5 * 3  # 5 folds, 3 shuffles of them on a small training part
    for (train_a, test_a), (train_b, test_b) in zip(first, second, strict=True):
        assert (train_a == train_b).all() and (test_a == test_b).all()
        assert sorted(np.bincount(targets.y[test_a]).tolist()) == [2, 2, 2]


def test_candidates_are_the_kinds_that_do_the_task() -> None:
    names = [k.name for k in candidate_kinds(Task.CLASSIFICATION)]
    assert names[:3] == ["logistic_regression", "linear_svm", "knn"] and "ridge" not in names
    assert [k.name for k in candidate_kinds(Task.REGRESSION)][0] == "ridge"


def test_params_with_auto_are_refused_naming_the_field() -> None:
    assert check_request(AUTO_KIND, ["a", "b"]) == (AUTO_KIND, Task.CLASSIFICATION)
    with pytest.raises(InvalidParams) as refused:
        check_request(AUTO_KIND, ["a", "b"], {"C": "1"})
    assert refused.value.field == "params" and "auto" in str(refused.value)


def test_the_budget_counts_every_candidate_and_each_keeps_its_cap() -> None:
    labels = class_targets(np.arange(200) % 4)
    estimate = estimate_cost(AUTO_KIND, labels, None, dim=384)
    single = estimate_cost("logistic_regression", labels, None, dim=384)
    assert [p.kind for p in estimate.parts] == [
        k.name for k in candidate_kinds(Task.CLASSIFICATION)
    ]
    assert estimate.parts[0].operations > single.operations
    assert estimate.operations == pytest.approx(sum(p.operations for p in estimate.parts))
    check_cost(estimate, DEFAULT_COST_CAPS)
    refusal = r"for kind 'knn' \(a candidate of kind \"auto\"\).*name a kind"
    with pytest.raises(InvalidParams, match=refusal):
        check_cost(estimate, {**DEFAULT_COST_CAPS, "knn": 1.0})


def test_train_head_auto_records_the_choice_in_the_card() -> None:
    x, labels = xor(120)
    trained = train_head(AUTO_KIND, x, labels)
    summary = trained.summary
    chosen = [s for s in summary.kind_scores if s.chosen]
    assert len(chosen) == 1 and chosen[0].kind == summary.kind != AUTO_KIND
    assert {s.kind for s in summary.kind_scores} == {
        k.name for k in candidate_kinds(Task.CLASSIFICATION)
    }
    card = trained.to_card(
        tenant="t", name="h", version=1, backbone="b", backbone_fingerprint="f" * 64
    )
    assert HeadCard.from_json(card.to_json()).kind_scores == summary.kind_scores


def test_the_one_standard_error_rule_keeps_an_earlier_candidate_within_the_noise() -> None:
    default = np.array([0.8, 0.9, 0.7, 0.85, 0.75])
    slightly = default + np.array([0.1, -0.05, 0.1, -0.05, 0.0])  # ahead by 0.02, noisily
    clearly = default + 0.1  # ahead on every fold
    assert equals_of_the_best([default, slightly]) == [0, 1]
    assert equals_of_the_best([default, clearly]) == [1]
