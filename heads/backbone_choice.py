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

import numpy as np
from pydantic import BaseModel, ConfigDict

from heads.kind_choice import equals_of_the_best, fold_scores, folds
from heads.kinds import DEFAULT_KIND, get_kind
from heads.params import parse_params
from heads.stopping import checkpoint
from heads.targets import EncodedTargets, Task

#: The kind name that asks for the choice (as a backbone name).
AUTO_BACKBONE = "auto"
#: The probe of each task, with fixed regularisation (scikit-learn's defaults).
PROBE_PARAMS = {DEFAULT_KIND: {"C": "1.0"}, "ridge": {"alpha": "1.0"}}
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


def _probe_scores(
    x: np.ndarray, targets: EncodedTargets, splits: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The probe's score on each fold of the training part (the same folds for every backbone).

    The probe is a plain linear model with fixed regularisation (`PROBE_PARAMS`), the same for
    every backbone: tuning it on a few examples would add the tuning's noise to the comparison.
    """
    name = "ridge" if targets.task is Task.REGRESSION else DEFAULT_KIND
    kind = get_kind(name, targets.task)
    return fold_scores(kind, x, targets, parse_params(kind.params, PROBE_PARAMS[name]), splits)


def choose_backbone(
    embeddings: Mapping[str, np.ndarray],
    targets: EncodedTargets,
    progress: Callable[[float], None] | None = None,
) -> tuple[str, list[BackboneScore]]:
    """Scores each backbone's embeddings of the training part; returns the best and every score.

    Args:
        embeddings: The training part embedded by each candidate, by backbone name, in order of
            preference (the first wins a full tie).
        targets: The training part's targets.
        progress: Called with the fraction of backbones done.

    Returns:
        The chosen backbone's name, and the scores in candidate order. When the training part
        is too small to fold (a class with one example), the probe scores are 0 and LogME alone
        decides.
    """
    names = list(embeddings)
    splits = folds(targets)  # the same folds for every backbone
    rows = []
    per_backbone = []
    for done, name in enumerate(names):
        x = np.asarray(embeddings[name], dtype=np.float32)
        checkpoint()
        scores = _probe_scores(x, targets, splits)
        per_backbone.append(scores)
        mean, std = (float(scores.mean()), float(scores.std())) if len(scores) else (0.0, 0.0)
        rows.append((name, mean, std, logme(x, targets)))
        if progress is not None:
            progress((done + 1) / len(names))
    # Backbones the best does not beat by more than the noise of the folds are its equals;
    # among them LogME, computed on every example at once, decides.
    tied = (
        equals_of_the_best(per_backbone)
        if all(len(f) for f in per_backbone)
        else list(range(len(rows)))
    )
    best = max(tied, key=lambda i: (rows[i][3], -i))
    return names[best], [
        BackboneScore(
            backbone=name, cv_score=round(mean, 6), cv_std=round(std, 6),
            transferability=round(evidence, 6), chosen=i == best,
        )
        for i, (name, mean, std, evidence) in enumerate(rows)
    ]  # fmt: skip
