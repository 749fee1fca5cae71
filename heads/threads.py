"""Single-threaded BLAS while heads train, safe under concurrent trainings.

Head problems are small (hundreds of examples, hundreds of dimensions). On a few shared cores,
multi-threaded BLAS made lbfgs fits 10-40x *slower* in measurements (threads spin and contend)
and the service already runs trainings in its own executor. threadpoolctl's limit is process-wide,
so overlapping trainings share one limit: the first to enter sets it, the last to leave restores
it (a plain nested ``threadpool_limits`` would let an early leaver lift the limit under a running
training, or leave the process limited for good).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

_lock = threading.Lock()
_users = 0
_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limits BLAS/OpenMP pools to one thread for the duration of the block."""
    global _users, _limiter
    with _lock:
        if _users == 0:
            _limiter = threadpool_limits(limits=1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None
