"""Export verification: the cosine check refuses a model that does not reproduce its source."""

from __future__ import annotations

import numpy as np
import pytest

from service.export.verify import ExportVerificationError, check_min_cosine, row_cosines


def _unit_rows(seed: int, rows: int = 8, dim: int = 384) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def test_identical_outputs_pass_with_cosine_one() -> None:
    reference = _unit_rows(0)
    assert check_min_cosine(reference, reference.copy(), 0.9999) == pytest.approx(1.0, abs=1e-6)


def test_small_float_noise_passes() -> None:
    reference = _unit_rows(0)
    noisy = reference + np.random.default_rng(1).normal(scale=1e-5, size=reference.shape)
    assert check_min_cosine(reference, noisy.astype(np.float32), 0.9999) > 0.9999


def test_one_wrong_row_fails_and_is_named() -> None:
    reference = _unit_rows(0)
    candidate = reference.copy()
    candidate[5] = _unit_rows(2, rows=1)[0]
    with pytest.raises(ExportVerificationError, match=r"input 5"):
        check_min_cosine(reference, candidate, 0.9999)


def test_nearly_right_but_below_threshold_fails() -> None:
    reference = _unit_rows(0)
    drifted = reference + 0.02 * _unit_rows(3)
    assert row_cosines(reference, drifted).min() < 0.9999
    with pytest.raises(ExportVerificationError):
        check_min_cosine(reference, drifted, 0.9999)


def test_shape_mismatch_and_non_finite_values_fail() -> None:
    reference = _unit_rows(0)
    with pytest.raises(ExportVerificationError, match="shape"):
        check_min_cosine(reference, reference[:, :100], 0.9999)
    broken = reference.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ExportVerificationError):
        check_min_cosine(reference, broken, 0.9999)
    with pytest.raises(ExportVerificationError):
        check_min_cosine(reference, np.zeros_like(reference), 0.9999)
