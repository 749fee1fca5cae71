"""``linear_svm``: LinearSVC, calibrated (sigmoid) so that it gives probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from heads.kinds.base import FitResult, HeadKind
from heads.kinds.sklearn_model import SklearnClassifier, fit_quietly
from heads.kinds.tuning import RareAwareKFold, linear_fit_rows, tune_c
from heads.params import ChoiceParam, FloatParam, ParamSpec, ParamValue
from heads.shape import ProblemShape
from heads.targets import EncodedTargets, Task

#: Stops at 10: beyond, liblinear needs many iterations and linear SVMs rarely gain.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
DEFAULT_C = 1.0
CALIBRATION_FOLDS = 3
SEED = 0
#: Cost model: liblinear's coordinate-descent passes over the examples, typically.
PASSES = 100


class LinearSvmKind(HeadKind):
    """Linear support vector machine with Platt-scaled probabilities."""

    name = "linear_svm"
    description = (
        "LinearSVC with sigmoid-calibrated probabilities; multi-label one-vs-rest; "
        "C tuned by CV if unset"
    )
    tasks = frozenset({Task.CLASSIFICATION, Task.MULTI_LABEL})
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "C": FloatParam(
            "inverse regularisation strength; tuned by cross-validation if unset",
            gt=0.0,
        ),
        "class_weight": ChoiceParam(
            "weighting of classes", default="none", choices=("none", "balanced")
        ),
    }

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Passes (rows x dim x outputs) of the C search and the calibrated fit and refit."""
        # Calibration trains on (k-1)/k of the rows k times: k-1 rows' worth of fitting.
        rows = linear_fit_rows(
            shape, len(C_GRID) if params["C"] is None else 0, CALIBRATION_FOLDS - 1
        )
        return float(PASSES * rows * shape.dim * shape.outputs)

    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        class_weight = None if params["class_weight"] == "none" else "balanced"
        x64 = x.astype(np.float64)
        c = params["C"]
        if c is None:
            c = tune_c(
                lambda: LinearSVC(class_weight=class_weight, random_state=SEED),
                C_GRID,
                x64,
                targets.y,
                DEFAULT_C,
            )
        calibrated = CalibratedClassifierCV(
            LinearSVC(C=float(c), class_weight=class_weight, random_state=SEED),
            method="sigmoid",
            cv=RareAwareKFold(CALIBRATION_FOLDS),
        )
        estimator = (
            calibrated if targets.task is Task.CLASSIFICATION else OneVsRestClassifier(calibrated)
        )
        fit_quietly(lambda: estimator.fit(x64, targets.y))
        effective: dict[str, float | int | str] = {
            "C": float(c),
            "class_weight": str(params["class_weight"]),
        }
        return FitResult(SklearnClassifier(estimator, targets.task), effective)
