"""The BLAS thread limit holds while any training runs and is restored after the last."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from threadpoolctl import threadpool_info

from heads.threads import single_threaded_blas


def _threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info()]


def test_overlapping_limits_restore_only_after_the_last() -> None:
    original = _threads()
    if not original or max(original) == 1:
        pytest.skip("no multi-threaded BLAS/OpenMP pool to limit here")
    first, second = ExitStack(), ExitStack()
    first.enter_context(single_threaded_blas())
    second.enter_context(single_threaded_blas())
    assert set(_threads()) == {1}
    first.close()  # the first training ends while the second still runs
    assert set(_threads()) == {1}
    second.close()
    assert _threads() == original
