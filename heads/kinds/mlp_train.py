"""The ``mlp`` kind's torch network and training loop (imported only when an mlp is trained).

The decisions (early stopping, refit, class weights, determinism) are in `heads.kinds.mlp`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from heads.kinds.mlp import MIN_IMPROVEMENT, MlpProblem, MlpSettings
from heads.stopping import checkpoint
from heads.targets import Task
from heads.threads import SharedLimit


def _save_torch_threads() -> Callable[[], None]:
    saved = torch.get_num_threads()
    return lambda: torch.set_num_threads(saved)


_TORCH = SharedLimit(_save_torch_threads, each_entrant=lambda: torch.set_num_threads(1))


def single_threaded_torch() -> AbstractContextManager[None]:
    """Runs torch on one intra-op thread for the block, safe under concurrent trainings.

    Why: a head is a few small matrix products per step; on a few shared cores, more threads
    only contend (as for BLAS, see `heads.threads`), and one thread makes results reproducible.
    torch's thread count is partly process-wide and partly per OS thread, so every entrant sets
    it in its own thread, and only the last one to leave restores the value the first one found.
    """
    return _TORCH.held()


class MlpNet(torch.nn.Module):
    """Scaling, one hidden ReLU layer, output layer, and the task's output function.

    `forward` is what the ONNX graph computes: probabilities (softmax for classification,
    sigmoid per label for multi-label) or de-standardised regression values of shape [N].
    Dropout is not a layer: the training loop applies it, with masks from its own generator.
    """

    # Buffers (registered in __init__), declared so they type as tensors, not `Tensor | Module`.
    x_mean: torch.Tensor
    x_inv_scale: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, problem: MlpProblem, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.task = problem.task
        dim = problem.x.shape[1]
        self.register_buffer("x_mean", torch.from_numpy(problem.x_mean.copy()))
        self.register_buffer("x_inv_scale", torch.tensor(1.0 / problem.x_scale))
        self.register_buffer("y_mean", torch.tensor(problem.y_mean))
        self.register_buffer("y_scale", torch.tensor(problem.y_scale))
        # Parameters initialised as torch.nn.Linear does, but from our generator: nn.Linear
        # would draw from (and advance) the global RNG.
        self.w1 = torch.nn.Parameter(_uniform((hidden, dim), dim, generator))
        self.b1 = torch.nn.Parameter(_uniform((hidden,), dim, generator))
        self.w2 = torch.nn.Parameter(_uniform((problem.n_outputs, hidden), hidden, generator))
        self.b2 = torch.nn.Parameter(_uniform((problem.n_outputs,), hidden, generator))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden activations (n, hidden) of raw embeddings."""
        return torch.relu(F.linear((x - self.x_mean) * self.x_inv_scale, self.w1, self.b1))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Output-layer values (n, n_outputs) of hidden activations."""
        return F.linear(h, self.w2, self.b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(self.hidden(x))
        if self.task is Task.CLASSIFICATION:
            return torch.softmax(z, dim=1)
        if self.task is Task.MULTI_LABEL:
            return torch.sigmoid(z)
        return z[:, 0] * self.y_scale + self.y_mean


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class _Loss:
    """The task's training loss on output-layer values, weighted as the problem says."""

    def __init__(self, problem: MlpProblem) -> None:
        self.task = problem.task
        w = problem.loss_weights
        self.weights = None if w is None else torch.from_numpy(w)

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task is Task.CLASSIFICATION:
            return F.cross_entropy(z, y, weight=self.weights)
        if self.task is Task.MULTI_LABEL:
            return F.binary_cross_entropy_with_logits(z, y, pos_weight=self.weights)
        return F.mse_loss(z[:, 0], y)


class _Run:
    """One training run from a fresh, seeded initialisation, advanced an epoch at a time."""

    def __init__(self, problem: MlpProblem, settings: MlpSettings, rows: np.ndarray) -> None:
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.net = MlpNet(problem, settings.hidden, self.generator)
        self.x = torch.from_numpy(problem.x[rows])
        self.y = torch.from_numpy(problem.y[rows])
        self.loss = _Loss(problem)
        self.dropout = settings.dropout
        self.batch_size = min(settings.batch_size, len(rows))
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )

    def epoch(self) -> None:
        """One pass over the rows in a seeded random order, with dropout."""
        order = torch.randperm(len(self.x), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            # A stop check every step: under a microsecond, against a step's 0.1-15 ms.
            checkpoint()
            batch = order[start : start + self.batch_size]
            h = self.net.hidden(self.x[batch])
            if self.dropout > 0:
                keep = torch.rand(h.shape, generator=self.generator) >= self.dropout
                h = h * keep / (1.0 - self.dropout)
            loss = self.loss(self.net.logits(h), self.y[batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    @torch.no_grad()
    def loss_on(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Loss without dropout; draws nothing from the generator (runs stay reproducible)."""
        return float(self.loss(self.net.logits(self.net.hidden(x)), y))


def _snapshot(net: MlpNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@dataclass(frozen=True, eq=False)
class Search:
    """What early stopping found.

    Attributes:
        best_epoch: Epoch count with the lowest monitored loss (counting only improvements of
            at least `heads.kinds.mlp.MIN_IMPROVEMENT`).
        epochs_run: Epochs actually trained before stopping.
        state: Without a hold-out, the weights after ``best_epoch`` epochs on every row (exactly
            what a fresh run of that many epochs gives, so the caller need not train again);
            None with a hold-out.
    """

    best_epoch: int
    epochs_run: int
    state: dict[str, torch.Tensor] | None


def search_epochs(problem: MlpProblem, settings: MlpSettings, holdout: np.ndarray) -> Search:
    """Early stopping: trains from the seed until the monitored loss stops improving.

    With a hold-out, trains on the other rows and monitors the hold-out loss; without one,
    trains on every row and monitors their loss. Stops after ``patience`` epochs without
    improvement, or at ``max_epochs``. Call under `single_threaded_torch`.

    Args:
        problem: The examples, encoded.
        settings: Hyper-parameters.
        holdout: Rows to monitor and not train on; may be empty.
    """
    n = len(problem.x)
    rows = np.setdiff1d(np.arange(n), holdout) if len(holdout) else np.arange(n)
    watched = holdout if len(holdout) else rows
    run = _Run(problem, settings, rows)
    x_watch = torch.from_numpy(problem.x[watched])
    y_watch = torch.from_numpy(problem.y[watched])
    best_loss, best_epoch, best_state = math.inf, 0, None
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1):
        run.epoch()
        loss = run.loss_on(x_watch, y_watch)
        if loss < best_loss - MIN_IMPROVEMENT or best_epoch == 0:
            best_loss, best_epoch = loss, epoch
            if not len(holdout):
                best_state = _snapshot(run.net)
        elif epoch - best_epoch >= settings.patience:
            break
    return Search(best_epoch, epoch, best_state)


def train(
    problem: MlpProblem,
    settings: MlpSettings,
    *,
    epochs: int | None = None,
    holdout: np.ndarray | None = None,
) -> tuple[MlpNet, int]:
    """Trains the network on every row of ``problem``, for a given or early-stopped epoch count.

    Args:
        problem: The examples, encoded.
        settings: Hyper-parameters.
        epochs: Train exactly this many epochs on every row; or None to choose by early stopping.
        holdout: With ``epochs`` None: rows held out to choose the epoch count (may be empty).

    Returns:
        The trained network (in eval mode) and the number of epochs it was trained for.
    """
    everything = np.arange(len(problem.x))
    with single_threaded_torch():
        if epochs is None:
            search = search_epochs(problem, settings, np.asarray(holdout, dtype=np.int64))
            epochs = search.best_epoch
            if search.state is not None:
                net = MlpNet(problem, settings.hidden, torch.Generator())
                net.load_state_dict(search.state)
                return net.eval(), epochs
        run = _Run(problem, settings, everything)
        for _ in range(epochs):
            run.epoch()
        return run.net.eval(), epochs
