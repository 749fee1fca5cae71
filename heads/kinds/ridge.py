"""``ridge``: L2-regularised linear regression."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from sklearn.linear_model import Ridge, RidgeCV

from heads.kinds.base import FitResult, HeadKind
from heads.kinds.sklearn_model import SklearnRegressor, fit_quietly
from heads.params import FloatParam, ParamSpec, ParamValue
from heads.shape import ProblemShape
from heads.targets import EncodedTargets, Task

ALPHA_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_ALPHA = 1.0
#: Leave-one-out on fewer examples than this picks alpha by noise.
MIN_EXAMPLES_TO_TUNE = 10


class RidgeKind(HeadKind):
    """Ridge regression; alpha tuned by efficient leave-one-out CV when unset."""

    name = "ridge"
    description = "ridge regression; alpha tuned by leave-one-out CV if unset"
    tasks = frozenset({Task.REGRESSION})
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "alpha": FloatParam("regularisation strength; tuned by cross-validation if unset", gt=0.0),
    }

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Closed-form fits (rows x dim^2 + dim^3): the leave-one-out search and the fit, twice
        with the refit."""
        d = shape.dim
        fits = [shape.n_train] + ([shape.n_examples] if shape.refits else [])
        per = 2 if params["alpha"] is None else 1
        return float(sum(per * (rows * d * d + d**3) for rows in fits))

    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        x64 = x.astype(np.float64)
        alpha = params["alpha"]
        if alpha is None:
            alpha = DEFAULT_ALPHA
            if len(targets) >= MIN_EXAMPLES_TO_TUNE:
                # RidgeCV's default is generalised (closed-form) leave-one-out: one fit, any n.
                search = fit_quietly(lambda: RidgeCV(alphas=ALPHA_GRID).fit(x64, targets.y))
                alpha = float(search.alpha_)
        estimator = Ridge(alpha=float(alpha))
        fit_quietly(lambda: estimator.fit(x64, targets.y))
        return FitResult(SklearnRegressor(estimator), {"alpha": float(alpha)})
