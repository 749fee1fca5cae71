"""`kind: "auto"`: the head kind chosen by cross-validation on the training part.

Every kind that does the task is a candidate (for classes: logistic regression, linear SVM,
k-NN and, where torch is installed, the MLP; for values: ridge and the MLP). Each is first fitted
on the whole training part the way a head of that kind is trained, which tunes its
regularisation as usual; then, with those effective parameters fixed, it is scored on the same
folds as every other candidate. The best mean score wins, unless an earlier candidate (the
default kind first) is within one standard error of it on the same folds: the one-standard-error
rule, since on a few examples a lead smaller than that is the folds' noise. The validation part is never seen: it still measures the chosen head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.model_selection import KFold, StratifiedKFold

from heads.kinds import DEFAULT_KIND, HeadKind, candidate_kinds, get_kind
from heads.params import ParamValue, parse_params
from heads.scores import TASK_SCORES, predictions
from heads.stopping import checkpoint
from heads.targets import EncodedTargets, Task

#: The kind name that asks for the choice.
AUTO_KIND = "auto"
#: Folds of the comparison (fewer when a class has fewer examples; none below 2), repeated with
#: other shuffles on a small training part, where one split's score is mostly noise.
FOLDS = 5
FOLD_SEED = 11
REPEATS_BELOW = 1000  # examples
REPEATS = 3


class KindScore(BaseModel):
    """One candidate kind's cross-validated score on the training part.

    Attributes:
        kind: The candidate.
        cv_score: Mean over the folds of the task's score (accuracy, micro-F1 or R²).
        cv_std: Its standard deviation over the folds.
        chosen: The head was trained with this kind.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: str
    cv_score: float
    cv_std: float
    chosen: bool


def folds(targets: EncodedTargets) -> list[tuple[np.ndarray, np.ndarray]]:
    """The comparison's folds of a training part: stratified for classes, plain otherwise,
    `REPEATS` shuffles of them below `REPEATS_BELOW` examples; empty when it is too small (a
    class with one example, or fewer than two examples)."""
    n = len(targets)
    if targets.task is Task.CLASSIFICATION:
        counts = np.bincount(targets.y)
        k = min(FOLDS, int(counts[counts > 0].min()))
    else:
        k = min(FOLDS, n)
    if k < 2:
        return []
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    for repeat in range(REPEATS if n < REPEATS_BELOW else 1):
        splitter: StratifiedKFold | KFold = (
            StratifiedKFold(k, shuffle=True, random_state=FOLD_SEED + repeat)
            if targets.task is Task.CLASSIFICATION
            else KFold(k, shuffle=True, random_state=FOLD_SEED + repeat)
        )
        splits.extend(splitter.split(np.zeros((n, 1)), targets.y))
    return splits


def within_noise(leader: np.ndarray, other: np.ndarray) -> bool:
    """The leader's lead over `other` (fold by fold, on the same folds) is at most one standard
    error of the paired differences: the folds cannot tell them apart."""
    if len(leader) < 2:
        return True
    differences = leader - other
    return bool(differences.mean() <= differences.std(ddof=1) / np.sqrt(len(differences)))


def equals_of_the_best(fold_scores: list[np.ndarray]) -> list[int]:
    """The candidates (indices) that the best mean score does not beat by more than the noise of
    the folds: the one-standard-error rule's choices, the best included."""
    leader = max(range(len(fold_scores)), key=lambda i: (float(fold_scores[i].mean()), -i))
    return [i for i, scores in enumerate(fold_scores) if within_noise(fold_scores[leader], scores)]


def fold_scores(
    kind: HeadKind,
    x: np.ndarray,
    targets: EncodedTargets,
    params: dict[str, ParamValue],
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """The task's score of `kind` with fixed `params` on each of `splits` (fitted on its
    training indices, scored on its test indices)."""
    score = TASK_SCORES[targets.task][1]
    out = []
    for train, test in splits:
        checkpoint()  # between fits: a cancelled job stops within one
        fitted = kind.fit(x[train], targets.subset(train), params).model
        out.append(score(targets.y[test], predictions(fitted.scores(x[test]), targets.task)))
    return np.array(out)


def choose_kind(
    x: np.ndarray,
    targets: EncodedTargets,
    progress: Callable[[float], None] | None = None,
    candidates: Sequence[HeadKind] | None = None,
) -> tuple[HeadKind, dict[str, ParamValue], list[KindScore]]:
    """Scores every candidate kind on the same folds of the training part; returns the best,
    its effective parameters (tuned once, on the whole training part) and every score.

    Args:
        x: The training part's embeddings (n, d), float32.
        targets: Its targets.
        progress: Called with the fraction of candidates done.
        candidates: The kinds to compare, in order of preference; None: `candidate_kinds`.

    Returns:
        The chosen kind, its parameters, and the scores in candidate order (empty when a class
        has a single training example, too few to fold: the default kind is used then).
    """
    splits = folds(targets)
    if not splits:
        # Only a class with one example does this (two examples of values always fold).
        kind = get_kind(DEFAULT_KIND, targets.task)
        return kind, parse_params(kind.params, {}), []
    candidates = list(candidates or candidate_kinds(targets.task))
    results: list[tuple[HeadKind, dict[str, ParamValue], float, float]] = []
    per_candidate = []
    for done, kind in enumerate(candidates):
        checkpoint()
        tuned: dict[str, ParamValue] = dict(
            kind.fit(x, targets, parse_params(kind.params, {})).params
        )
        scores = fold_scores(kind, x, targets, tuned, splits)
        per_candidate.append(scores)
        results.append((kind, tuned, float(scores.mean()), float(scores.std())))
        if progress is not None:
            progress((done + 1) / len(candidates))
    # The one-standard-error rule: the earliest candidate (the default first) that the best does
    # not beat by more than the noise of the folds.
    best = min(equals_of_the_best(per_candidate))
    return (
        results[best][0],
        results[best][1],
        [
            KindScore(
                kind=kind.name, cv_score=round(mean, 6), cv_std=round(std, 6), chosen=i == best
            )
            for i, (kind, _, mean, std) in enumerate(results)
        ],
    )
