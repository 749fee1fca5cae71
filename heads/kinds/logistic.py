"""``logistic_regression``: the default kind; multinomial, or one-vs-rest for multi-label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from heads.kinds.base import FitResult, HeadKind
from heads.kinds.sklearn_model import SklearnClassifier, fit_quietly
from heads.kinds.tuning import linear_fit_rows, tune_c
from heads.params import ChoiceParam, FloatParam, IntParam, ParamSpec, ParamValue, int_value
from heads.shape import ProblemShape
from heads.targets import EncodedTargets, Task

#: Sentence embeddings are unit vectors, whose best C is often well above 1: the grid reaches far.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_C = 1.0  # sklearn's, used when the data is too small to tune on
#: Cost model: lbfgs on embeddings typically converges within a tenth of ``max_iter``.
ITERATION_SHARE = 0.1


class LogisticRegressionKind(HeadKind):
    """L2-regularised logistic regression (lbfgs)."""

    name = "logistic_regression"
    description = "L2 logistic regression (lbfgs); multi-label one-vs-rest; C tuned by CV if unset"
    tasks = frozenset({Task.CLASSIFICATION, Task.MULTI_LABEL})
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "C": FloatParam(
            "inverse regularisation strength; tuned by cross-validation if unset",
            gt=0.0,
        ),
        "max_iter": IntParam("lbfgs iteration limit", default=1000, ge=10, le=10000),
        "class_weight": ChoiceParam(
            "weighting of classes", default="none", choices=("none", "balanced")
        ),
    }

    cost_params = ("max_iter",)

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Gradient passes (rows x dim x outputs) of the C search, the fit and the refit."""
        iterations = ITERATION_SHARE * int_value(params, "max_iter")
        rows = linear_fit_rows(shape, len(C_GRID) if params["C"] is None else 0)
        return float(iterations * rows * shape.dim * shape.outputs)

    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        max_iter = int_value(params, "max_iter")
        class_weight = None if params["class_weight"] == "none" else "balanced"
        x64 = x.astype(np.float64)

        def make() -> LogisticRegression:
            # warm_start lets the C grid walk reuse each fold's previous solution.
            return LogisticRegression(max_iter=max_iter, class_weight=class_weight, warm_start=True)

        c = params["C"]
        if c is None:
            c = tune_c(make, C_GRID, x64, targets.y, DEFAULT_C)
        base = LogisticRegression(C=float(c), max_iter=max_iter, class_weight=class_weight)
        estimator = base if targets.task is Task.CLASSIFICATION else OneVsRestClassifier(base)
        fit_quietly(lambda: estimator.fit(x64, targets.y))
        effective: dict[str, float | int | str] = {
            "C": float(c),
            "max_iter": max_iter,
            "class_weight": str(params["class_weight"]),
        }
        return FitResult(SklearnClassifier(estimator, targets.task), effective)
