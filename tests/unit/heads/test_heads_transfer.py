"""The negative-transfer check: from-scratch baselines on raw text and pixels, and the verdict;
the task scores it and the choice of kind compare by."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, r2_score

from heads.scores import TASK_SCORES
from heads.split import split_indices
from heads.targets import EncodedTargets, Task, encode_targets
from heads.transfer import (
    PIXELS,
    RawInputs,
    baseline_wins,
    compare_with_baseline,
    downscale,
)

FILLERS = (
    "Please process the request for {code} today.",
    "Customer asked about {code} again this morning.",
    "The ticket mentions {code} and nothing else useful.",
    "Forwarded: status of {code}?",
)


def code_task(seed: int = 0) -> tuple[list[str], list[str]]:
    """Labels that hinge on an exact code: each code is approved or rejected, whatever the text."""
    rng = np.random.default_rng(seed)
    codes = [f"ZK-{rng.integers(1000, 9999)}" for _ in range(12)]
    verdict = {code: ("approve" if i % 2 else "reject") for i, code in enumerate(codes)}
    texts, labels = [], []
    for _ in range(8):
        for code in codes:
            texts.append(FILLERS[rng.integers(len(FILLERS))].format(code=code))
            labels.append(verdict[code])
    return texts, labels


def blob_images(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Noise with one bright 6x6 square, in the left or the right half: the label."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, (n, PIXELS, PIXELS, 3), dtype=np.uint8)
    labels = []
    for i in range(n):
        side = i % 2
        top = rng.integers(0, PIXELS - 6)
        left = rng.integers(0, PIXELS // 2 - 6) + side * PIXELS // 2
        images[i, top : top + 6, left : left + 6] = 255
        labels.append("right" if side else "left")
    return images, labels


def _chance_scores(n: int, labels: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, labels))


def _perfect_scores(truth: np.ndarray, labels: int) -> np.ndarray:
    return np.eye(labels)[truth]


def test_numpy_metrics_equal_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert TASK_SCORES[Task.CLASSIFICATION][1](y, p) == pytest.approx(accuracy_score(y, p))
    ym, pm = rng.integers(0, 2, (50, 4)), rng.integers(0, 2, (50, 4))
    micro = f1_score(ym, pm, average="micro", zero_division=1)
    assert TASK_SCORES[Task.MULTI_LABEL][1](ym, pm) == pytest.approx(micro)
    nothing = np.zeros((5, 3), dtype=np.int64)
    assert TASK_SCORES[Task.MULTI_LABEL][1](nothing, nothing) == 1.0
    yr, pr = rng.normal(size=40), rng.normal(size=40)
    assert TASK_SCORES[Task.REGRESSION][1](yr, pr) == pytest.approx(r2_score(yr, pr))
    assert TASK_SCORES[Task.REGRESSION][1](np.ones(4), np.ones(4)) == 1.0
    assert TASK_SCORES[Task.REGRESSION][1](np.ones(4), np.zeros(4)) == 0.0


def _code_task_report(head_scores: Callable[[EncodedTargets, np.ndarray], np.ndarray]):
    """The code task split as a head would split it, compared with `head_scores(targets, val)`."""
    texts, labels = code_task()
    targets = encode_targets(labels)
    train, val = split_indices(targets, 0.25)
    raw = RawInputs("text", tuple(texts))
    return compare_with_baseline(raw, targets, train, val, head_scores(targets, val))


def test_a_head_at_chance_on_a_code_task_is_negative_transfer() -> None:
    report = _code_task_report(lambda t, val: _chance_scores(len(val), len(t.labels)))
    assert report is not None
    assert report.baseline == "tfidf_word_char+ridge"
    assert report.metric == "accuracy"
    assert report.baseline_score >= 0.9, report  # the codes are in the text: easy from scratch
    assert report.negative_transfer, report
    assert "negative transfer" in report.warning and "another backbone" in report.warning


def test_a_head_as_good_as_the_baseline_is_not_negative_transfer() -> None:
    report = _code_task_report(lambda t, val: _perfect_scores(t.y[val], len(t.labels)))
    assert report is not None and report.head_score == 1.0
    assert not report.negative_transfer and report.warning == ""


def test_a_small_lead_within_the_noise_is_not_negative_transfer() -> None:
    truth = np.array([0, 1] * 5)
    head = truth.copy()
    head[:2] = 1 - head[:2]  # 8/10
    baseline = truth.copy()
    baseline[:1] = 1 - baseline[:1]  # 9/10: one example is no evidence
    score = TASK_SCORES[Task.CLASSIFICATION][1]
    assert baseline_wins(truth, head, baseline, score) < 0.95


def test_pixels_see_a_position_that_pooled_features_lose() -> None:
    images, labels = blob_images(80)
    targets = encode_targets(labels)
    train, val = split_indices(targets, 0.25)
    report = compare_with_baseline(
        RawInputs("pixels", pixels=images), targets, train, val,
        _chance_scores(len(val), 2),
    )  # fmt: skip
    assert report is not None and report.baseline == f"pixels{PIXELS}+ridge"
    assert report.baseline_score >= 0.9 and report.negative_transfer, report
    assert "pixels" in report.warning


def test_regression_uses_ridge_and_r2() -> None:
    rng = np.random.default_rng(0)
    words = {"alpha": 1.0, "beta": 5.0, "gamma": 9.0}
    texts, values = [], []
    for _ in range(60):
        word = str(rng.choice(list(words)))
        texts.append(f"the reading says {word} for this item")
        values.append(words[word] + float(rng.normal(0, 0.1)))
    targets = encode_targets(values)
    train, val = split_indices(targets, 0.25)
    constant = np.full(len(val), float(np.mean(targets.y[train])))
    report = compare_with_baseline(RawInputs("text", tuple(texts)), targets, train, val, constant)
    assert report is not None and report.baseline == "tfidf_word_char+ridge"
    assert report.metric == "r2" and report.baseline_score > 0.9 and report.negative_transfer


def test_multi_label_runs_one_model_per_label() -> None:
    texts, labels = code_task()
    multi = [[label, "code"] if i % 3 else [label] for i, label in enumerate(labels)]
    targets = encode_targets(multi)
    train, val = split_indices(targets, 0.25)
    perfect = targets.y[val].astype(float)
    report = compare_with_baseline(RawInputs("text", tuple(texts)), targets, train, val, perfect)
    assert report is not None and report.metric == "micro_f1" and not report.negative_transfer


def test_too_few_validation_examples_give_no_report() -> None:
    texts, labels = code_task()
    targets = encode_targets(labels)
    everything = np.arange(len(labels))
    assert compare_with_baseline(
        RawInputs("text", tuple(texts)), targets, everything, everything[:1],
        _chance_scores(1, 2),
    ) is None  # fmt: skip


def test_downscale_averages_each_block() -> None:
    image = np.zeros((PIXELS * 7 + 3, PIXELS * 7, 3), dtype=np.uint8)
    image[:7, :7] = 70  # the first block
    small = downscale(image)
    assert small.shape == (PIXELS, PIXELS, 3)
    assert small[0, 0].tolist() == [70, 70, 70] and int(small[1:, 1:].max()) == 0
    with pytest.raises(ValueError, match="smaller"):
        downscale(np.zeros((8, 8, 3), dtype=np.uint8))
