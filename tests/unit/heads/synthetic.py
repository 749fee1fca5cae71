"""Small synthetic data for the heads unit tests (imported by them; not a test module)."""

from __future__ import annotations

import numpy as np

DIM = 384


def blobs(
    n: int, n_classes: int, *, noise: float = 0.1, seed: int = 0, dim: int = DIM
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around unit-norm centres: (float32 (n, dim), int class per row).

    Classes are balanced (round-robin, then shuffled). With the default noise they are easily
    separable; raise ``noise`` (per coordinate) to make them overlap.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) / np.sqrt(dim)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = centers[y] + rng.normal(size=(n, dim)) * noise / np.sqrt(dim) * 4
    return x.astype(np.float32), y


def class_targets(y: np.ndarray) -> list[str]:
    return [f"class_{k}" for k in y]


def multi_label_targets(y: np.ndarray) -> list[list[str]]:
    """Three labels derived from the blob index: bits 0 and 1 of it, and 'odd' for 1 and 3."""
    out = []
    for k in y:
        labels = [name for bit, name in ((1, "a"), (2, "b")) if int(k) & bit]
        if int(k) in (1, 3):
            labels.append("odd")
        out.append(labels)
    return out


def regression_targets(y: np.ndarray, seed: int = 0) -> list[float]:
    """A value per blob (3 * index + 1) plus a little noise: learnable from the embeddings."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in 3.0 * y + 1.0 + rng.normal(size=len(y)) * 0.1]
