"""Fused heads: the weight grid, the joined input, training on parts that each see half of the
signal, backbone "auto" choosing a fusion only when it pays, and the card that records it."""

from __future__ import annotations

import numpy as np
import pytest

from heads import HeadFormatError, LoadedHead, train_head
from heads.backbone_choice import choose_backbone
from heads.fusion import RELATIVE_WEIGHTS, Fused, FusedPart, fuse, weight_grid
from heads.targets import encode_targets
from tests.unit.heads.synthetic import class_targets
from tests.unit.heads.test_heads_card import _card


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four classes made of two coin flips; part "a" sees the first flip, part "b" the second
    (each with noise): alone, each tells two of the four classes apart at best."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    first, second = y // 2, y % 2
    a = rng.normal(size=(n, 8)) * 0.5
    b = rng.normal(size=(n, 12)) * 0.5
    a[:, 0] += 3.0 * first
    b[:, 0] += 3.0 * second
    return a.astype(np.float32), b.astype(np.float32), y


def test_the_grid_starts_with_equal_weights_each_of_unit_norm() -> None:
    for count in (2, 3):
        grid = weight_grid(count)
        assert len(grid) == len(RELATIVE_WEIGHTS) ** (count - 1)
        assert len(set(grid[0])) == 1  # equal weights first: they win a tie
        for weights in grid:
            assert np.isclose(sum(w * w for w in weights), 1.0, atol=1e-4)
    assert any(np.isclose(w[0] / w[1], 0.5) for w in weight_grid(2))


def test_fuse_joins_weighted_parts_side_by_side() -> None:
    a, b = np.ones((3, 2)), np.full((3, 4), 2.0)
    joined = fuse([a, b], [0.5, 2.0])
    assert joined.shape == (3, 6) and joined.dtype == np.float32
    assert np.all(joined[:, :2] == 0.5) and np.all(joined[:, 2:] == 4.0)


def test_a_fused_head_learns_what_no_part_knows_alone() -> None:
    a, b, y = _halves(200, 0)
    targets = class_targets(y)
    trained = train_head("", Fused({"a": a, "b": b}), targets)
    summary = trained.summary
    assert [p.backbone for p in summary.fusion] == ["a", "b"]
    assert [p.dim for p in summary.fusion] == [8, 12] and summary.embedding_dim == 20
    assert summary.metrics["accuracy"] >= 0.9
    alone = [train_head("", part, targets).summary.metrics["accuracy"] for part in (a, b)]
    assert max(alone) <= 0.65
    # The published head takes the weighted join: predictions from fuse() match the labels.
    card = trained.to_card(
        tenant="t", name="fused", version=1, backbone="a+b", backbone_fingerprint="fa+fb"
    )
    head = LoadedHead.from_bytes(card, trained.onnx_bytes)
    weights = [p.weight for p in summary.fusion]
    predicted = [p.label for p in head.predict(fuse([a, b], weights))]
    assert np.mean(np.array(predicted) == np.array(targets)) >= 0.9


def test_auto_chooses_the_fusion_only_when_it_beats_the_best_part() -> None:
    a, b, y = _halves(160, 1)
    targets = encode_targets(class_targets(y))
    choice = choose_backbone({"a": a, "b": b}, targets, with_fusion=True)
    assert choice.name == "a+b" and len(choice.weights) == 2
    assert [s.backbone for s in choice.scores] == ["a", "b", "a+b"]
    assert [s.chosen for s in choice.scores] == [False, False, True]
    # Two copies of one backbone: joining them adds nothing, so the single one is kept.
    same = choose_backbone({"a": a, "copy": a.copy()}, targets, with_fusion=True)
    assert same.name == "a" and same.weights == ()
    assert same.scores[-1].backbone == "a+copy" and not same.scores[-1].chosen
    # Without the flag, no fusion is scored.
    assert [s.backbone for s in choose_backbone({"a": a, "b": b}, targets).scores] == ["a", "b"]


def test_auto_training_publishes_the_chosen_fusion() -> None:
    a, b, y = _halves(160, 2)
    trained = train_head("", {"a": a, "b": b}, class_targets(y), fuse_candidates=True)
    assert [p.backbone for p in trained.summary.fusion] == ["a", "b"]
    assert trained.summary.embedding_dim == 20


def test_the_card_records_the_parts_and_checks_them() -> None:
    parts = [
        FusedPart(backbone="m", dim=100, weight=0.7),
        FusedPart(backbone="p", dim=284, weight=1.2),
    ]
    card = _card(fusion=parts, backbone="m+p", backbone_fingerprint="f1+f2")
    assert type(card).from_json(card.to_json()) == card
    with pytest.raises(HeadFormatError, match="fusion"):
        _card(fusion=parts[:1] + [parts[0]], backbone="m+m", backbone_fingerprint="f1+f2")
    with pytest.raises(HeadFormatError, match="backbone_fingerprint"):
        _card(fusion=parts, backbone="m+q", backbone_fingerprint="f1+f2")
    with pytest.raises(HeadFormatError, match="backbone_fingerprint"):
        _card(fusion=parts, backbone="m+p", backbone_fingerprint="f1")
