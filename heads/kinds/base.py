"""What a head kind is, for the registry and for training.

A kind (``logistic_regression``, ``knn``...) declares the tasks and parameters it supports and
fits a `FittedModel`. A fitted model answers in the ONNX contract's shape (`heads.contract`) and
exports itself to ONNX; training verifies the export against it. Nothing else is asked of a kind,
so a torch ``mlp`` kind plugs in with its own fitted model (torch.onnx export) and its own module,
without touching the sklearn ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import onnx

from heads.params import ParamSpec, ParamValue
from heads.shape import ProblemShape
from heads.targets import EncodedTargets, Task

#: `HeadKind.cost` of a kind that has no model of its own: a linear model's few hundred passes.
DEFAULT_PASSES = 300


class FittedModel(Protocol):
    """A fitted head, before export."""

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Predicts in the contract's shape.

        Args:
            x: float32 embeddings, shape (n, d).

        Returns:
            Classification/multi-label: float64 probabilities (n, n_labels) in label order.
            Regression: float64 values (n,).
        """
        ...

    def to_onnx(self, embedding_dim: int) -> onnx.ModelProto:
        """Exports the model as an ONNX graph honouring `heads.contract`."""
        ...


@dataclass(frozen=True)
class FitResult:
    """A fitted model and the parameters it was actually fitted with.

    Attributes:
        model: The fitted model.
        params: Every declared parameter with its effective value (tuned ones filled in, clamped
            ones clamped); training the same data with these gives the same model.
    """

    model: FittedModel
    params: dict[str, float | int | str]


class HeadKind(ABC):
    """A family of heads. Subclasses set the class attributes and implement `fit`."""

    name: ClassVar[str]
    description: ClassVar[str]
    tasks: ClassVar[frozenset[Task]]
    params: ClassVar[Mapping[str, ParamSpec]]
    #: Parameters that raise `cost`, named when a request is refused for its cost.
    cost_params: ClassVar[tuple[str, ...]] = ()

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Estimated operations of one `heads.train_head` run (see `heads.budget`).

        The default suits a linear model: a few hundred passes over the examples for the fit
        and as many for the refit. Kinds with a better model override it.
        """
        rows = shape.n_train + (shape.n_examples if shape.refits else 0)
        return float(DEFAULT_PASSES * rows * shape.dim * shape.outputs)

    @abstractmethod
    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        """Fits a model.

        Args:
            x: float32 embeddings, shape (n, d), finite.
            targets: Encoded targets of the same n examples; their task is one of `tasks`, and
                every class (label) of ``targets.labels`` occurs at least once.
            params: Parsed parameters (`heads.params.parse_params`); a tunable parameter that is
                None is chosen by the kind, typically by cross-validation on ``x``.

        Returns:
            The fitted model and its effective parameters.
        """
