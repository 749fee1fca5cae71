"""backbone "auto": the probe on the same folds, LogME as a second opinion, the choice."""

from __future__ import annotations

import numpy as np
import pytest

from heads.backbone_choice import choose_backbone, logme
from heads.targets import encode_targets
from tests.unit.heads.synthetic import blobs, class_targets


def _features(y: np.ndarray, signal: float, dim: int, seed: int) -> np.ndarray:
    """Noise, plus `signal` times a class-specific direction."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(int(y.max()) + 1, dim))
    return (rng.normal(size=(len(y), dim)) + signal * directions[y]).astype(np.float32)


def test_logme_ranks_informative_features_above_noise_and_weak_ones() -> None:
    y = np.arange(120) % 3
    targets = encode_targets(class_targets(y))
    strong, weak, noise = (_features(y, s, 32, 1) for s in (3.0, 0.5, 0.0))
    assert logme(strong, targets) > logme(weak, targets) > logme(noise, targets)
    values = np.array([0.5, 1.5, 2.0, 3.5] * 30)
    regression = encode_targets(values.tolist())
    informative = np.column_stack([values, np.random.default_rng(0).normal(size=(120, 7))])
    assert logme(informative, regression) > logme(noise[:, :8], regression)


def test_logme_is_finite_with_more_dimensions_than_examples() -> None:
    y = np.arange(12) % 2
    value = logme(_features(y, 2.0, 768, 0), encode_targets(class_targets(y)))
    assert np.isfinite(value)


def test_the_backbone_whose_probe_scores_best_is_chosen_and_every_one_recorded() -> None:
    y = np.arange(90) % 3
    targets = encode_targets(class_targets(y))
    candidates = {"weak": _features(y, 0.3, 64, 2), "strong": _features(y, 3.0, 128, 3)}
    seen: list[float] = []
    choice = choose_backbone(candidates, targets, seen.append)
    chosen, scores = choice.name, choice.scores
    assert chosen == "strong" and seen == pytest.approx([0.5, 1.0])
    assert [s.backbone for s in scores] == ["weak", "strong"]
    assert [s.chosen for s in scores] == [False, True]
    assert scores[1].cv_score > scores[0].cv_score and scores[1].cv_score >= 0.95
    assert scores[1].transferability > scores[0].transferability


def test_a_full_tie_goes_to_the_first_backbone() -> None:
    x, y = blobs(40, 2, noise=0.05)
    choice = choose_backbone({"a": x, "b": x.copy()}, encode_targets(class_targets(y)))
    chosen, scores = choice.name, choice.scores
    assert chosen == "a" and scores[0].cv_score == scores[1].cv_score == 1.0


def test_train_head_on_candidates_trains_on_the_chosen_backbone_and_records_it() -> None:
    from heads import HeadCard, train_head

    y = np.arange(80) % 2
    labels = class_targets(y)
    candidates = {"noise": _features(y, 0.0, 16, 4), "signal": _features(y, 3.0, 24, 5)}
    stages: list[str] = []
    trained = train_head("", candidates, labels, progress=lambda stage, _: stages.append(stage))
    summary = trained.summary
    assert summary.embedding_dim == 24  # the chosen backbone's width
    assert [s.backbone for s in summary.backbone_scores if s.chosen] == ["signal"]
    assert "choosing backbone" in stages and stages.index("choosing backbone") < stages.index("fit")
    card = trained.to_card(
        tenant="t", name="h", version=1, backbone="signal", backbone_fingerprint="f" * 64
    )
    assert HeadCard.from_json(card.to_json()).backbone_scores == summary.backbone_scores
