"""The shape of a training problem: what a kind's cost estimate needs besides its parameters."""

from __future__ import annotations

from dataclasses import dataclass

from heads.split import DEFAULT_VALIDATION_FRACTION
from heads.targets import Task


@dataclass(frozen=True)
class ProblemShape:
    """What a training run's cost depends on, besides the kind's parameters.

    Attributes:
        n_examples: Examples in the request (training and validation parts).
        dim: Embedding width of the backbone.
        task: The inferred task.
        n_labels: Distinct labels (classes); 0 for regression.
        validation_fraction: Share held out for metrics (then refitted on everything).
    """

    n_examples: int
    dim: int
    task: Task
    n_labels: int
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION

    @property
    def n_validation(self) -> int:
        """Size of the validation part (as `heads.split.split_indices` draws it, at most)."""
        return min(int(round(self.n_examples * self.validation_fraction)), self.n_examples)

    @property
    def n_train(self) -> int:
        """Size of the training part."""
        return max(self.n_examples - self.n_validation, 1)

    @property
    def refits(self) -> bool:
        """Whether the head is refitted on every example after its first fit."""
        return self.n_validation > 0

    @property
    def outputs(self) -> int:
        """Width of a model's output: labels, or 1 for regression."""
        return max(self.n_labels, 1)
