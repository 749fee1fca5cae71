"""The BLAS thread limit holds while any training runs and is restored after the last."""

from __future__ import annotations

from collections.abc import Callable
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


def test_a_shared_limit_is_set_by_the_first_and_restored_by_the_last_across_threads() -> None:
    import threading

    from heads.threads import SharedLimit

    calls: list[str] = []

    def apply() -> Callable[[], None]:
        calls.append("apply")
        return lambda: calls.append("restore")

    limit = SharedLimit(apply, each_entrant=lambda: calls.append(threading.current_thread().name))
    first, second = ExitStack(), ExitStack()
    first.enter_context(limit.held())
    other = threading.Thread(target=lambda: second.enter_context(limit.held()), name="other")
    other.start()
    other.join()
    assert calls == ["apply", "MainThread", "other"]
    first.close()  # the first one in leaves first: the limit stays
    assert calls[-1] == "other"
    second.close()
    assert calls[-1] == "restore"
    with limit.held():  # a new first entrant sets it again
        assert calls[-2:] == ["apply", "MainThread"]
    assert calls.count("restore") == 2
