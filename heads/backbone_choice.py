"""`backbone: "auto"`: the backbone chosen by a cross-validated probe on the training part.

The service embeds the examples with every served backbone of their modality; each backbone's
embeddings are then scored by a linear probe (logistic regression for classes, ridge for values,
with scikit-learn's default regularisation), cross-validated on the same folds for every backbone
(`heads.kind_choice.folds`). The best mean probe score wins unless its lead is within the noise
of the folds; LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021), the evidence of a Bayesian linear model on the features, computed for
each backbone as a second opinion, decides among those within the noise, and the head records
it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from heads.fusion import choose_weights, fuse, fused_name, weight_grid
from heads.kind_choice import equals_of_the_best, fold_scores, folds, within_noise
from heads.kinds import DEFAULT_KIND, get_kind
from heads.params import parse_params
from heads.stopping import checkpoint
from heads.targets import EncodedTargets, Task

#: The kind name that asks for the choice (as a backbone name).
AUTO_BACKBONE = "auto"
#: The probe of each task, with fixed regularisation (scikit-learn's defaults).
PROBE_PARAMS = {DEFAULT_KIND: {"C": "1.0"}, "ridge": {"alpha": "1.0"}}
#: The probe that weighs a fusion's parts: weaker regularisation, which suits unit-length
#: sentence embeddings (their best C is often well above 1). Measured on few-shot topics (17
#: docstring modules, 16 examples each, 6 draws, a C-tuned logistic regression on the pick): held
#: out, 0.671 on the weights it picks against 0.668 with the backbone probe's C=1 (MPNet alone
#: 0.661, MiniLM 0.630).
WEIGHT_PROBE_PARAMS = {DEFAULT_KIND: {"C": "10.0"}, "ridge": {"alpha": "0.1"}}
#: LogME's fixed-point iterations (it converges in a few) and its stopping tolerance.
LOGME_ITERATIONS = 11
LOGME_TOLERANCE = 1e-3


class BackboneScore(BaseModel):
    """One candidate backbone, scored on the training part.

    Attributes:
        backbone: Its name.
        cv_score: Mean probe score over the folds (accuracy, micro-F1 or R²).
        cv_std: Its standard deviation over the folds.
        transferability: LogME per example (higher is better); a second opinion.
        chosen: The head was trained on this backbone.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    backbone: str
    cv_score: float
    cv_std: float
    transferability: float
    chosen: bool


def logme(features: np.ndarray, targets: EncodedTargets) -> float:
    """LogME of `features` (n, d) for the targets: the log evidence per example of a Bayesian
    linear regression onto each target column (one-hot classes, each label, or the value),
    averaged over columns, with its two precisions (prior α, noise β) at their evidence maximum.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    if targets.task is Task.CLASSIFICATION:
        columns = np.eye(len(targets.labels))[targets.y]
    elif targets.task is Task.MULTI_LABEL:
        columns = targets.y.astype(np.float64)
    else:
        columns = targets.y.astype(np.float64)[:, None]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of FᵀF (min(n, d) of them; the rest are 0)
    evidences = [_column_evidence(u, sigma, column, n, d) for column in columns.T]
    return float(np.mean(evidences))


def _column_evidence(u: np.ndarray, sigma: np.ndarray, y: np.ndarray, n: int, d: int) -> float:
    z2 = (u.T @ y) ** 2
    outside = max(float(y @ y - z2.sum()), 0.0)  # the part of y outside the features' span
    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_ITERATIONS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * z2 / (sigma + t) ** 2).sum())
        residual2 = float((z2 / (1.0 + sigma / t) ** 2).sum()) + outside
        new_alpha = gamma / (m2 + 1e-5)
        new_beta = (n - gamma) / (residual2 + 1e-5)
        converged = abs(new_alpha / new_beta - t) / t < LOGME_TOLERANCE
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    t = alpha / beta
    m2 = float((sigma * z2 / (sigma + t) ** 2).sum())
    residual2 = float((z2 / (1.0 + sigma / t) ** 2).sum()) + outside
    # Directions beyond the first min(n, d) have eigenvalue 0: log(α + β·0) each.
    log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * math.log(alpha)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - 0.5 * log_det
        - beta / 2 * residual2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence / n


def probe_scores(
    x: np.ndarray,
    targets: EncodedTargets,
    splits: list[tuple[np.ndarray, np.ndarray]],
    probes: Mapping[str, Mapping[str, str]] = PROBE_PARAMS,
) -> np.ndarray:
    """The probe's score on each fold of the training part (the same folds for every backbone).

    The probe is a plain linear model with fixed regularisation (`probes`, by kind), the same for
    every candidate: tuning it on a few examples would add the tuning's noise to the comparison.
    """
    name = "ridge" if targets.task is Task.REGRESSION else DEFAULT_KIND
    kind = get_kind(name, targets.task)
    return fold_scores(kind, x, targets, parse_params(kind.params, probes[name]), splits)


def weight_probe_scores(
    x: np.ndarray, targets: EncodedTargets, splits: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The probe that weighs a fusion's parts (`WEIGHT_PROBE_PARAMS`)."""
    return probe_scores(x, targets, splits, WEIGHT_PROBE_PARAMS)


@dataclass(frozen=True)
class BackboneChoice:
    """What backbone "auto" chose: a backbone's name, or the fusion of every candidate (its
    name joins theirs, and `weights` are its parts' weights); and every candidate's score."""

    name: str
    scores: list[BackboneScore]
    weights: tuple[float, ...] = ()


def choose_backbone(
    embeddings: Mapping[str, np.ndarray],
    targets: EncodedTargets,
    progress: Callable[[float], None] | None = None,
    with_fusion: bool = False,
) -> BackboneChoice:
    """Scores each backbone's embeddings of the training part; returns the best and every score.

    Args:
        embeddings: The training part embedded by each candidate, by backbone name, in order of
            preference (the first wins a full tie).
        targets: The training part's targets.
        progress: Called with the fraction of the candidates done.
        with_fusion: With two candidates or more, also the fusion of them all
            (`heads.fusion`), its weights chosen on the same folds. It is chosen only when it
            beats the best single backbone by more than the noise of the folds: it costs the
            sum of its parts at every Predict.

    Returns:
        The choice and the scores in candidate order (the fusion last). When the training part
        is too small to fold (a class with one example), the probe scores are 0, LogME alone
        decides, and no fusion is chosen.
    """
    names = list(embeddings)
    fusing = with_fusion and len(names) > 1
    steps = len(names) + (len(weight_grid(len(names))) if fusing else 0)
    splits = folds(targets)  # the same folds for every candidate

    def score_folds(x: np.ndarray) -> np.ndarray:
        return probe_scores(x, targets, splits)

    rows = []
    per_backbone = []
    for done, name in enumerate(names):
        x = np.asarray(embeddings[name], dtype=np.float32)
        checkpoint()
        scores = score_folds(x)
        per_backbone.append(scores)
        rows.append((name, *_mean_std(scores), logme(x, targets)))
        if progress is not None:
            progress((done + 1) / steps)
    # Backbones the best does not beat by more than the noise of the folds are its equals;
    # among them LogME, computed on every example at once, decides.
    folded = all(len(f) for f in per_backbone)
    tied = equals_of_the_best(per_backbone) if folded else list(range(len(rows)))
    best = max(tied, key=lambda i: (rows[i][3], -i))
    chosen = names[best]
    weights: tuple[float, ...] = ()
    if fusing:
        parts = [np.asarray(embeddings[name], dtype=np.float32) for name in names]
        fusion = choose_weights(
            parts,
            lambda x: weight_probe_scores(x, targets, splits),
            None
            if progress is None
            else lambda f: progress((len(names) + f * (steps - len(names))) / steps),
        )
        fused = fuse(parts, fusion.weights)
        rows.append((fused_name(names), *_mean_std(fusion.fold_scores), logme(fused, targets)))
        leader = per_backbone[best]
        if (
            folded
            and fusion.fold_scores.mean() > leader.mean()
            and not within_noise(fusion.fold_scores, leader)
        ):
            best, chosen, weights = len(rows) - 1, fused_name(names), fusion.weights
    return BackboneChoice(
        chosen,
        [
            BackboneScore(
                backbone=name, cv_score=round(mean, 6), cv_std=round(std, 6),
                transferability=round(evidence, 6), chosen=i == best,
            )
            for i, (name, mean, std, evidence) in enumerate(rows)
        ],
        weights,
    )  # fmt: skip


def _mean_std(scores: np.ndarray) -> tuple[float, float]:
    return (float(scores.mean()), float(scores.std())) if len(scores) else (0.0, 0.0)
