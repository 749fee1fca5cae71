"""``knn``: k-nearest neighbours over the training embeddings (no fitting, no tuning)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import onnx
from sklearn.metrics import pairwise_distances

from heads.kinds.base import FitResult, HeadKind
from heads.kinds.knn_onnx import TIE_SCALE, build_knn_graph
from heads.params import ChoiceParam, IntParam, ParamSpec, ParamValue, int_value
from heads.shape import ProblemShape
from heads.targets import EncodedTargets, Task


class KnnModel:
    """A k-nearest-neighbour head: the training set and how to vote.

    It predicts exactly as sklearn's brute-force ``KNeighborsClassifier`` (sklearn's distances,
    its ``uniform``/``distance`` weights including "neighbours at distance 0 take all the
    weight"), with one rule sklearn leaves undefined made definite: among neighbours equally far
    away (duplicated examples), the earlier training example wins, as ONNX TopK does. Without
    that rule, a duplicated example with conflicting labels at the k-th place makes sklearn and
    any export disagree at random. Distances are compared after rounding to 2**-30, so that
    arithmetic noise between implementations does not decide such ties either.

    Multi-label: a label's probability is the (weighted) share of neighbours carrying it.
    """

    def __init__(
        self, x: np.ndarray, indicator: np.ndarray, n_neighbors: int, metric: str, weights: str
    ) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.indicator = np.asarray(indicator, dtype=np.float64)
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.weights = weights

    def scores(self, x: np.ndarray) -> np.ndarray:
        distances = pairwise_distances(
            x.astype(np.float64), self.x.astype(np.float64), metric=self.metric
        )
        key = np.round(distances * TIE_SCALE)
        nearest = np.argsort(key, axis=1, kind="stable")[:, : self.n_neighbors]
        if self.weights == "uniform":
            weights = np.ones(nearest.shape)
        else:
            near = np.take_along_axis(distances, nearest, axis=1)
            with np.errstate(divide="ignore"):
                weights = 1.0 / near
            exact = near == 0  # sklearn: exact matches take all the weight
            rows = exact.any(axis=1)
            weights[rows] = exact[rows]
        votes = np.einsum("nk,nkl->nl", weights, self.indicator[nearest])
        return votes / weights.sum(axis=1, keepdims=True)

    def to_onnx(self, embedding_dim: int) -> onnx.ModelProto:
        assert self.x.shape[1] == embedding_dim
        return build_knn_graph(self.x, self.indicator, self.n_neighbors, self.metric, self.weights)


class KnnKind(HeadKind):
    """k-nearest neighbours (brute force); cosine distance by default, as suits embeddings."""

    name = "knn"
    description = "k-nearest neighbours (cosine or euclidean); the head embeds its training set"
    tasks = frozenset({Task.CLASSIFICATION, Task.MULTI_LABEL})
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "n_neighbors": IntParam(
            "neighbours consulted (capped at the number of examples)", default=5, ge=1, le=100
        ),
        "metric": ChoiceParam("distance", default="cosine", choices=("cosine", "euclidean")),
        "weights": ChoiceParam(
            "neighbour weighting", default="uniform", choices=("uniform", "distance")
        ),
    }

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Distances (queries x examples x dim): evaluating, then verifying the export twice
        (model and ONNX graph) on the validation part, or on the training part without one."""
        queries = shape.n_validation or shape.n_train
        return float(3 * queries * shape.n_examples * shape.dim)

    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        k = min(int_value(params, "n_neighbors"), len(targets))
        metric, weights = str(params["metric"]), str(params["weights"])
        if targets.task is Task.CLASSIFICATION:
            indicator = np.eye(len(targets.labels), dtype=np.float32)[targets.y]
        else:
            indicator = targets.y.astype(np.float32)
        model = KnnModel(x, indicator, k, metric, weights)
        return FitResult(model, {"n_neighbors": k, "metric": metric, "weights": weights})
