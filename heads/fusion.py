"""Fused heads: one head on the joined embeddings of several backbones of one modality.

Different pretrained backbones capture different things; a linear head on their embeddings side
by side (each part times a weight) often beats the best of them alone, at the sum of their
serving costs. The weights are chosen by a cross-validated probe on the training part, on the
same folds as every other choice (`heads.kind_choice.folds`), from a small grid of relative
weights that includes equal ones, which are kept unless another weighting beats them by more than
one standard error of the folds. Each candidate is scaled so that its squared weights add up to
1: the join of unit-length parts is unit-length too, like a single backbone's embedding, so the
probe's fixed regularisation compares relative weightings, not overall scales.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from heads.kind_choice import within_noise
from heads.stopping import checkpoint

#: Joins part names into a fused backbone's name: "all-minilm-l6-v2+all-mpnet-base-v2".
SEPARATOR = "+"
#: Relative weights each part but the last may take (the last is 1): equal weights are in it.
RELATIVE_WEIGHTS = (0.5, 1.0, 2.0)
#: A fusion of more parts would make the grid (3^(parts-1)) and every Predict too costly.
MAX_PARTS = 4

FoldScorer = Callable[[np.ndarray], np.ndarray]  # fused x -> the probe's score on each fold


class FusedPart(BaseModel):
    """One part of a fused head's input, as its card records it.

    Attributes:
        backbone: The part's backbone name.
        dim: Its embedding width: the part's columns in the head's input, in part order.
        weight: What its embedding is multiplied by before joining.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    backbone: str = Field(min_length=1)
    dim: int = Field(ge=1)
    weight: float = Field(gt=0.0, allow_inf_nan=False)


@dataclass(frozen=True)
class Fused:
    """The examples embedded by each part of a fused backbone, by name, in part order: what
    `train_head` takes to train a fused head."""

    parts: Mapping[str, np.ndarray]


def fused_name(parts: Sequence[str]) -> str:
    """A fused backbone's name (or fingerprint) from its parts'."""
    return SEPARATOR.join(parts)


def fuse(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Each part's rows times its weight, side by side: (n, sum of widths) float32."""
    return np.hstack(
        [
            np.asarray(x, dtype=np.float32) * np.float32(w)
            for x, w in zip(parts, weights, strict=True)
        ]
    )


def weight_grid(count: int) -> list[tuple[float, ...]]:
    """Candidate weights of `count` parts: the relative grid, each scaled to unit norm; equal
    weights come first, so they win a tie."""
    grid = [(*first, 1.0) for first in itertools.product(RELATIVE_WEIGHTS, repeat=count - 1)]
    grid.sort(key=lambda relative: (len(set(relative)) > 1, relative))
    return [_scaled(relative) for relative in grid]


def _scaled(relative: tuple[float, ...]) -> tuple[float, ...]:
    factor = 1.0 / np.sqrt(sum(r * r for r in relative))
    return tuple(round(float(r * factor), 6) for r in relative)


@dataclass(frozen=True)
class WeightChoice:
    """A weighting and its probe's fold scores."""

    weights: tuple[float, ...]
    fold_scores: np.ndarray


def choose_weights(
    parts: Sequence[np.ndarray],
    score_folds: FoldScorer,
    progress: Callable[[float], None] | None = None,
) -> WeightChoice:
    """Probes every weighting of the grid on the same folds. Equal weights, the default, are
    kept unless the best beats them by more than the noise of the folds (the one-standard-error
    rule of every choice here); else the best mean wins."""
    grid = weight_grid(len(parts))
    choices: list[WeightChoice] = []
    for done, weights in enumerate(grid):
        checkpoint()  # between candidates: a cancelled job stops within one
        choices.append(WeightChoice(weights, score_folds(fuse(parts, weights))))
        if progress is not None:
            progress((done + 1) / len(grid))
    equal = choices[0]  # the grid starts with equal weights
    if not all(len(choice.fold_scores) for choice in choices):
        return equal  # too few examples to fold: nothing to tell the weightings apart
    best = max(choices, key=lambda choice: float(choice.fold_scores.mean()))
    return equal if within_noise(best.fold_scores, equal.fold_scores) else best


def describe_parts(
    names: Sequence[str], parts: Sequence[np.ndarray], weights: Sequence[float]
) -> list[FusedPart]:
    """What the card records of each part: its name, width and weight."""
    return [
        FusedPart(backbone=name, dim=int(x.shape[1]), weight=float(w))
        for name, x, w in zip(names, parts, weights, strict=True)
    ]
