"""`FittedModel` adapters for sklearn estimators that skl2onnx converts as they are."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import onnx
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

from heads.onnx_export import sklearn_to_onnx
from heads.targets import Task
from heads.threads import single_threaded_blas

_T = TypeVar("_T")


@contextmanager
def quiet_fit() -> Iterator[None]:
    """Context for every sklearn fit/predict of a head: quiet, and single-threaded BLAS.

    Warnings go to stderr, not to anyone who can act on them: the caller sees the validation
    metrics instead. Typical ones: lbfgs stopping at max_iter, a label absent from a CV fold, an
    undefined F1 in a fold with no positives. BLAS threads: see `heads.threads`.
    """
    with single_threaded_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def fit_quietly(fit: Callable[[], _T]) -> _T:
    """Runs ``fit`` under `quiet_fit` and returns its result."""
    with quiet_fit():
        return fit()


class SklearnClassifier:
    """A fitted sklearn classifier: multi-class, or multi-label through one-vs-rest.

    The estimator's classes must be ``0..n_labels-1`` (classification) or the columns of the
    indicator matrix (multi-label), so that its probability columns are in the card's order.
    """

    def __init__(self, estimator: Any, task: Task) -> None:
        self.estimator = estimator
        self.task = task

    def scores(self, x: np.ndarray) -> np.ndarray:
        with quiet_fit():
            return np.asarray(self.estimator.predict_proba(x.astype(np.float64)), np.float64)

    def to_onnx(self, embedding_dim: int) -> onnx.ModelProto:
        return sklearn_to_onnx(self.estimator, embedding_dim, self.task)


class SklearnRegressor:
    """A fitted single-output sklearn regressor."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(x.astype(np.float64)), np.float64).reshape(-1)

    def to_onnx(self, embedding_dim: int) -> onnx.ModelProto:
        return sklearn_to_onnx(self.estimator, embedding_dim, Task.REGRESSION)
