"""Checks that an exported backbone reproduces its source model; pure numpy, no torch."""

from __future__ import annotations

import numpy as np


class ExportVerificationError(RuntimeError):
    """The exported model does not reproduce the source model closely enough: nothing is written."""


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `candidate` with the same row of `reference`."""
    if reference.shape != candidate.shape:
        raise ExportVerificationError(
            f"shape mismatch: reference {reference.shape}, exported {candidate.shape}"
        )
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    # A zero vector on either side is a failure, not a division by zero.
    return np.where(norms > 0, (ref * cand).sum(axis=1) / np.maximum(norms, 1e-30), 0.0)


def check_min_cosine(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> float:
    """Returns the smallest row cosine, or raises when it is below `threshold` or not finite."""
    cosines = row_cosines(reference, candidate)
    if not np.all(np.isfinite(candidate)):
        raise ExportVerificationError("exported model produced non-finite values")
    worst = float(cosines.min())
    if worst < threshold:
        row = int(cosines.argmin())
        raise ExportVerificationError(
            f"exported model disagrees with the source model: min cosine {worst:.6f} "
            f"(input {row}) < {threshold}"
        )
    return worst
