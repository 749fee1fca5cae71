"""``mlp``: a torch network with one hidden layer (ReLU, dropout), trained with Adam.

Decisions:

* **Early stopping and the refit.** `heads.training.train_head` fits on its training part, then
  refits on all examples with the first fit's effective parameters; the kind never sees the
  validation part. So the number of epochs is a *tunable* parameter, ``epochs``:

  - unset: the kind holds out `HOLDOUT_FRACTION` of the examples it is given (stratified, every
    class and label keeps training examples; `heads.split.split_indices` with its own seed),
    trains up to ``max_epochs``, and stops when the hold-out loss has not improved by
    `MIN_IMPROVEMENT` for ``patience`` epochs. The best epoch count E is kept, and the network
    is then trained afresh on *all* the examples it was given for exactly E epochs;
  - given: the network trains on all the examples for exactly that many epochs, no hold-out.

  The effective parameters record ``epochs=E``, so the refit on all examples reuses the epoch
  count found on the training part (no hold-out, no second search), and training again with a
  head's recorded parameters gives the same model, as for every kind. With no hold-out possible
  (every class too small to lend an example) the training loss is monitored instead.
* **Class weights** (``class_weight=balanced``, the default): classification weighs each class's
  cross-entropy by n / (n_classes * count), as sklearn's "balanced"; multi-label gives each
  label a BCE ``pos_weight`` of negatives / positives (1 for a label present on every example
  or none). Regression ignores the parameter.
* **Determinism**: the initial weights, the shuffling and the dropout masks all come from one
  ``torch.Generator`` seeded with ``seed``; the global torch RNG is neither read nor changed, so
  concurrent trainings cannot disturb each other. torch runs single-threaded while training (see
  `heads.kinds.mlp_train`), and single-threaded CPU kernels are deterministic: the same data
  and parameters give the same weights bit for bit. (``torch.use_deterministic_algorithms`` is
  process-global and changes nothing for these CPU kernels, so it is left alone.)
* **Scaling**, stored in the network and so in its ONNX graph: inputs are centred per feature
  and divided by one overall scale (the RMS of the centred features; one scalar keeps the
  embedding's geometry and is stable on a handful of examples). Regression targets are
  standardised for training and the de-standardisation is the graph's last step.
* **Availability**: torch is imported only inside `MlpKind.fit` (``import heads`` never imports
  it; serving an mlp head needs only onnxruntime). The registry lists ``mlp`` only where torch
  is installed, and names the missing dependency when asked for it elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heads.kinds.base import FitResult, HeadKind
from heads.params import (
    ChoiceParam,
    FloatParam,
    IntParam,
    ParamSpec,
    ParamValue,
    float_value,
    int_value,
)
from heads.shape import ProblemShape
from heads.split import split_indices
from heads.targets import EncodedTargets, Task

#: Share of the examples given to `MlpKind.fit` held out to choose the number of epochs.
HOLDOUT_FRACTION = 0.2
#: Not `heads.split.SPLIT_SEED`: the hold-out must not mirror the validation split's draws.
HOLDOUT_SEED = 1337
#: Smallest decrease of the monitored loss that counts as an improvement. Losses are O(1)
#: (mean cross-entropy, BCE, or MSE on standardised targets); on easy data they creep towards 0
#: for ever, and a relative threshold would never stop.
MIN_IMPROVEMENT = 1e-3
#: Below this, a centred input or target is treated as constant (scale 1).
MIN_SCALE = 1e-12

# Cost model (`MlpKind.cost`), in multiply-add equivalents, measured on one core with torch:
#: forward + backward of one row through the network, per parameter.
ROW_COST_PER_PARAM = 3
#: One Adam step, per parameter: a dozen memory-bound element-wise passes (12.9 ms a step for
#: hidden=4096 with batch_size=1, against 0.4 s for 5 epochs of 4,000 rows at batch_size=256).
STEP_COST_PER_PARAM = 120
#: One step's fixed Python and dispatch overhead (about 1 ms).
STEP_OVERHEAD = 1.5e7


@dataclass(frozen=True)
class MlpSettings:
    """Hyper-parameters of one training run (everything but the number of epochs)."""

    hidden: int
    dropout: float
    lr: float
    weight_decay: float
    batch_size: int
    seed: int
    max_epochs: int
    patience: int


@dataclass(frozen=True, eq=False)
class MlpProblem:
    """The examples in the form the network trains on.

    Attributes:
        task: The head's task.
        x: float32 embeddings (n, d).
        y: Classification: int64 class indices (n,). Multi-label: float32 0/1 matrix
            (n, n_labels). Regression: float32 standardised values (n,).
        n_outputs: Width of the network's output layer (1 for regression).
        loss_weights: float32 class weights (classification) or per-label positive weights
            (multi-label), or None for an unweighted loss.
        x_mean: float32 per-feature mean of ``x`` (d,).
        x_scale: The overall scale ``x - x_mean`` is divided by.
        y_mean: Regression: mean of the raw targets (0 otherwise).
        y_scale: Regression: standard deviation of the raw targets (1 otherwise).
    """

    task: Task
    x: np.ndarray
    y: np.ndarray
    n_outputs: int
    loss_weights: np.ndarray | None
    x_mean: np.ndarray
    x_scale: float
    y_mean: float = 0.0
    y_scale: float = 1.0


def _scale_or_one(value: float) -> float:
    return value if value > MIN_SCALE else 1.0


def class_weights(targets: EncodedTargets) -> np.ndarray:
    """Balanced loss weights: per class (classification) or per label's positives (multi-label).

    Args:
        targets: Classification or multi-label targets.

    Returns:
        float32 weights, one per label.
    """
    n_labels = len(targets.labels)
    if targets.task is Task.CLASSIFICATION:
        counts = np.bincount(targets.y, minlength=n_labels).astype(np.float64)
        # A class absent here (never, via train_head) would divide by zero; it has no loss anyway.
        weights = np.where(counts > 0, len(targets) / (n_labels * np.maximum(counts, 1)), 0.0)
    else:
        positives = targets.y.sum(axis=0).astype(np.float64)
        negatives = len(targets) - positives
        both = (positives > 0) & (negatives > 0)
        weights = np.where(both, negatives / np.maximum(positives, 1), 1.0)
    return weights.astype(np.float32)


def build_problem(x: np.ndarray, targets: EncodedTargets, class_weight: str) -> MlpProblem:
    """Encodes examples for training, with their scaling and loss weights.

    Args:
        x: float32 embeddings (n, d).
        targets: Their encoded targets.
        class_weight: ``balanced`` or ``none`` (ignored for regression).

    Returns:
        The problem to hand to `heads.kinds.mlp_train.train`.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    x_mean = x.mean(axis=0, dtype=np.float64)
    x_scale = _scale_or_one(float(np.sqrt(np.mean((x - x_mean) ** 2))))
    mean32 = x_mean.astype(np.float32)
    if targets.task is Task.REGRESSION:
        y_mean = float(targets.y.mean())
        y_scale = _scale_or_one(float(targets.y.std()))
        y = ((targets.y - y_mean) / y_scale).astype(np.float32)
        return MlpProblem(Task.REGRESSION, x, y, 1, None, mean32, x_scale, y_mean, y_scale)
    weights = class_weights(targets) if class_weight == "balanced" else None
    y = targets.y if targets.task is Task.CLASSIFICATION else targets.y.astype(np.float32)
    return MlpProblem(targets.task, x, y, len(targets.labels), weights, mean32, x_scale)


class MlpKind(HeadKind):
    """One-hidden-layer MLP in torch, exported with torch.onnx."""

    name = "mlp"
    description = (
        "one-hidden-layer MLP (ReLU, dropout, Adam, torch); epochs chosen by early stopping "
        "on a hold-out if unset; balanced class weights; fixed seed"
    )
    tasks = frozenset({Task.CLASSIFICATION, Task.MULTI_LABEL, Task.REGRESSION})
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "hidden": IntParam("width of the hidden layer", default=256, ge=8, le=4096),
        "dropout": FloatParam("dropout rate on the hidden layer", default=0.1, ge=0.0, le=0.9),
        "lr": FloatParam("Adam learning rate", default=3e-3, gt=0.0, le=1.0),
        "weight_decay": FloatParam("Adam L2 weight decay", default=1e-4, ge=0.0, le=1.0),
        "batch_size": IntParam("examples per step (capped at the examples)", 256, 1, 65536),
        "epochs": IntParam(
            "training epochs; chosen by early stopping on a hold-out if unset",
            default=None,
            ge=1,
            le=2000,
        ),
        "max_epochs": IntParam("early stopping: most epochs tried", default=200, ge=1, le=2000),
        "patience": IntParam(
            "early stopping: epochs without improvement before stopping", default=10, ge=1, le=200
        ),
        "class_weight": ChoiceParam(
            "weighting of classes (multi-label: of each label's positives); not for regression",
            default="balanced",
            choices=("balanced", "none"),
        ),
        "seed": IntParam("seed of initial weights, shuffling and dropout", 0, 0, 2**31 - 1),
    }

    cost_params = ("epochs", "max_epochs", "batch_size", "hidden")

    def cost(self, shape: ProblemShape, params: Mapping[str, ParamValue]) -> float:
        """Rows and steps of every run `fit` and the refit make, times the network's size.

        Unset ``epochs`` is bounded by ``max_epochs``: the early-stopping search on 80% of the
        training part, the fresh run on all of it, then the refit on every example.
        """
        hidden, batch = int_value(params, "hidden"), int_value(params, "batch_size")
        size = hidden * (shape.dim + shape.outputs) + hidden + shape.outputs

        def run(rows: int, epochs: int) -> float:
            steps = -(-rows // min(batch, max(rows, 1))) * epochs
            return float(
                ROW_COST_PER_PARAM * rows * epochs * size
                + steps * (STEP_COST_PER_PARAM * size + STEP_OVERHEAD)
            )

        given = params["epochs"] is not None
        epochs = int_value(params, "epochs" if given else "max_epochs")
        total = run(shape.n_train, epochs)
        if not given:
            total += run(int(shape.n_train * (1 - HOLDOUT_FRACTION)) or 1, epochs)
        if shape.refits:
            total += run(shape.n_examples, epochs)
        return total

    def fit(
        self, x: np.ndarray, targets: EncodedTargets, params: Mapping[str, ParamValue]
    ) -> FitResult:
        # torch is imported here only: `import heads` and serving must work without it.
        from heads.kinds.mlp_model import MlpModel
        from heads.kinds.mlp_train import train

        settings = MlpSettings(
            hidden=int_value(params, "hidden"),
            dropout=float_value(params, "dropout"),
            lr=float_value(params, "lr"),
            weight_decay=float_value(params, "weight_decay"),
            batch_size=int_value(params, "batch_size"),
            seed=int_value(params, "seed"),
            max_epochs=int_value(params, "max_epochs"),
            patience=int_value(params, "patience"),
        )
        problem = build_problem(x, targets, str(params["class_weight"]))
        if params["epochs"] is None:
            _, holdout = split_indices(targets, HOLDOUT_FRACTION, HOLDOUT_SEED)
            net, epochs = train(problem, settings, holdout=holdout)
        else:
            net, epochs = train(problem, settings, epochs=int_value(params, "epochs"))
        effective: dict[str, float | int | str] = {
            key: value for key, value in params.items() if value is not None
        }
        effective["epochs"] = epochs
        return FitResult(MlpModel(net, targets.task), effective)
