"""Choosing a regularisation strength by cross-validation, and CV folds for small classes.

Heads are trained by people who do not tune hyper-parameters, so an untuned ``C`` must not cost
them accuracy: it is picked from a small log grid by k-fold accuracy on the training part, and
ties go to the grid value closest to sklearn's own default (1.0), so tuning never moves away from
the default without evidence. Tuning is skipped, and the default used, when classes are too small
for every fold to hold two examples of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from heads.kinds.sklearn_model import quiet_fit
from heads.shape import ProblemShape
from heads.stopping import checkpoint

CV_SEED = 7
MIN_FOLDS = 3
#: Below this many examples 5 folds are cheap and reduce variance; above, 3 are enough.
FIVE_FOLDS_BELOW = 500
MIN_PER_CLASS_PER_FOLD = 2


def cv_folds(y: np.ndarray) -> int:
    """Returns how many stratified folds fit ``y``, or 0 when it is too small to tune on.

    Every class must be able to put `MIN_PER_CLASS_PER_FOLD` examples in every fold, with at
    least `MIN_FOLDS` folds.
    """
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(counts) < 2:
        return 0
    wanted = 5 if len(y) < FIVE_FOLDS_BELOW else 3
    k = min(wanted, int(counts.min()) // MIN_PER_CLASS_PER_FOLD)
    return k if k >= MIN_FOLDS else 0


def pick_closest_to_default(grid: Sequence[float], scores: np.ndarray, default: float) -> float:
    """Returns the best-scoring grid value; among ties, the one closest to ``default`` (log)."""
    best = float(np.max(scores))
    tied = [c for c, s in zip(grid, scores, strict=True) if s >= best - 1e-12]
    return float(min(tied, key=lambda c: abs(math.log(c / default))))


def cv_accuracy(
    make: Callable[[], Any], name: str, grid: Sequence[float], x: np.ndarray, y: np.ndarray, k: int
) -> np.ndarray:
    """Mean k-fold accuracy of an estimator for each value of one parameter.

    Grid values are visited in increasing order on one estimator per fold, so an estimator built
    with ``warm_start=True`` starts each fit from the previous, less regularised solution (the
    trick that makes sklearn's LogisticRegressionCV fast, without its churning API).

    Args:
        make: Builds a fresh, unfitted estimator.
        name: The parameter to vary, e.g. ``"C"``.
        grid: Its values, increasing.
        x: Features (n, d).
        y: Class labels (n,); each class has at least ``k`` members.
        k: Number of stratified folds.

    Returns:
        Mean accuracy per grid value.
    """
    scores = np.zeros(len(grid))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=CV_SEED)
    with quiet_fit():
        for train, test in splitter.split(x, y):
            estimator = make()
            for i, value in enumerate(grid):
                checkpoint()  # between candidates: a cancelled job stops within one fit
                estimator.set_params(**{name: value})
                estimator.fit(x[train], y[train])
                scores[i] += estimator.score(x[test], y[test])
    return scores / k


def tune_c(
    make: Callable[[], Any],
    grid: Sequence[float],
    x: np.ndarray,
    y: np.ndarray,
    default: float,
) -> float:
    """Picks ``C`` for a classifier, or a multi-label problem's shared ``C``.

    Args:
        make: Builds a fresh binary/multi-class estimator taking ``C``.
        grid: Candidate values, increasing.
        x: Features (n, d).
        y: Class indices (n,) or a 0/1 indicator matrix (n, n_labels). For multi-label, each
            label is a binary problem and their accuracies are summed; labels too rare to fold
            are left out of the vote.
        default: The value used when nothing can be tuned.

    Returns:
        The chosen value.
    """
    columns = [y] if y.ndim == 1 else [y[:, j] for j in range(y.shape[1])]
    total = np.zeros(len(grid))
    voted = False
    for column in columns:
        k = cv_folds(column)
        if k:
            total += cv_accuracy(make, "C", grid, x, column, k)
            voted = True
    return pick_closest_to_default(grid, total, default) if voted else default


class RareAwareKFold:
    """Stratified k-fold that tolerates classes with fewer than k members.

    sklearn's CalibratedClassifierCV refuses any class smaller than its number of folds, yet a
    tenant may well give a class one example. Members of such *rare* classes go into the training
    AND the test part of every fold, so every fold's classifier knows every class and every
    calibrator sees it; the other classes are split by StratifiedKFold as usual. With no class
    large enough there is a single fold, training and calibrating on everything.

    Deliberately has no ``n_splits`` attribute: CalibratedClassifierCV would then re-apply its
    class-size check.
    """

    def __init__(self, k: int, seed: int = CV_SEED) -> None:
        self.k = k
        self.seed = seed

    def get_n_splits(self, x: Any = None, y: Any = None, groups: Any = None) -> int:
        if y is None:
            return self.k
        return sum(1 for _ in self.split(np.zeros(len(y)), y))

    def split(
        self, x: Any, y: np.ndarray, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        y = np.asarray(y)
        classes, counts = np.unique(y, return_counts=True)
        rare = np.flatnonzero(np.isin(y, classes[counts < self.k]))
        common = np.flatnonzero(np.isin(y, classes[counts >= self.k]))
        if len(common) == 0:
            everything = np.arange(len(y))
            yield everything, everything
            return
        splitter = StratifiedKFold(n_splits=self.k, shuffle=True, random_state=self.seed)
        for train, test in splitter.split(common, y[common]):
            checkpoint()  # between calibration folds (sklearn runs them from this generator)
            yield (
                np.sort(np.concatenate([common[train], rare])),
                np.sort(np.concatenate([common[test], rare])),
            )


def linear_fit_rows(shape: ProblemShape, grid: int, per_fit: float = 1.0) -> float:
    """Rows a linear kind fits on in one run: the k-fold search over ``grid`` values (each fold
    trains on (k-1)/k of the training part), the fit, and the refit; ``per_fit`` scales the last
    two (e.g. calibration folds). Pessimistic: the search is counted even when the classes turn
    out too small to fold."""
    folds = 5 if shape.n_train < FIVE_FOLDS_BELOW else 3
    search = grid * (folds - 1) * shape.n_train
    fits = shape.n_train + (shape.n_examples if shape.refits else 0)
    return float(search + per_fit * fits)
