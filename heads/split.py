"""Deterministic train/validation split.

The validation part only *measures* a head; it must never cost the head a class. So every class
(classification) and every label (multi-label) keeps at least one example in training, and a class
with a single example goes to training entirely. The seed is fixed: training the same data twice
gives the same split, the same metrics and the same model.
"""

from __future__ import annotations

import math

import numpy as np

from heads.errors import InvalidParams
from heads.targets import EncodedTargets, Task

DEFAULT_VALIDATION_FRACTION = 0.2
MAX_VALIDATION_FRACTION = 0.9
SPLIT_SEED = 20240601


def check_validation_fraction(fraction: float) -> float:
    """Validates a validation fraction.

    Args:
        fraction: Share of the examples to hold out, in [0, 0.9].

    Returns:
        The fraction as a float.

    Raises:
        InvalidParams: On field ``validation_fraction`` when it is not a finite number in range.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidParams("validation_fraction", "must be a number")
    value = float(fraction)
    if not (math.isfinite(value) and 0.0 <= value <= MAX_VALIDATION_FRACTION):
        raise InvalidParams(
            "validation_fraction", f"must be in [0, {MAX_VALIDATION_FRACTION}], got {fraction!r}"
        )
    return value


def _stratified(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    val: list[np.ndarray] = []
    for cls in np.unique(y):  # sorted, so the draws happen in a fixed order
        members = rng.permutation(np.flatnonzero(y == cls))
        # Round to nearest, but always leave one member in training.
        n_val = min(int(round(len(members) * fraction)), len(members) - 1)
        val.append(members[:n_val])
    return np.concatenate(val) if val else np.empty(0, dtype=np.int64)


def _multi_label(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n = y.shape[0]
    order = rng.permutation(n)
    val = set(order[: int(round(n * fraction))].tolist())
    # Give back to training one example of every label that the draw left without one. Labels
    # are visited in a fixed order and the first holder in draw order is moved: deterministic.
    position = {int(i): p for p, i in enumerate(order)}
    for j in range(y.shape[1]):
        holders = np.flatnonzero(y[:, j])
        if len(holders) and all(int(i) in val for i in holders):
            val.discard(min((int(i) for i in holders), key=position.__getitem__))
    return np.fromiter(sorted(val), dtype=np.int64, count=len(val))


def split_indices(
    targets: EncodedTargets, fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Splits example indices into a training and a validation part.

    Classification is stratified per class; multi-label is random, then repaired so that every
    label occurs in training; regression is random. The validation part may be empty (fraction 0
    or too few examples).

    Args:
        targets: The encoded targets of all examples.
        fraction: Validation share, already checked with `check_validation_fraction`.
        seed: Seed of the split's random generator.

    Returns:
        (train, validation) sorted int64 index arrays that partition ``range(len(targets))``.
    """
    n = len(targets)
    rng = np.random.default_rng(seed)
    if targets.task is Task.CLASSIFICATION:
        val = _stratified(targets.y, fraction, rng)
    elif targets.task is Task.MULTI_LABEL:
        val = _multi_label(targets.y, fraction, rng)
    else:
        # Keep at least two examples in training: a line through one point is no regressor.
        n_val = min(int(round(n * fraction)), max(n - 2, 0))
        val = rng.permutation(n)[:n_val]
    val = np.sort(val.astype(np.int64))
    train = np.setdiff1d(np.arange(n, dtype=np.int64), val, assume_unique=True)
    return train, val
