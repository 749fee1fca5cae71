"""Single-threaded BLAS (and torch) while heads train, safe under concurrent trainings.

Head problems are small (hundreds of examples, hundreds of dimensions). On a few shared cores,
multi-threaded BLAS made lbfgs fits 10-40x *slower* in measurements (threads spin and contend)
and the service already runs trainings in its own executor. Thread limits are process-wide,
so overlapping trainings share one limit (`SharedLimit`): the first to enter sets it, the last to
leave restores it (a plain nested ``threadpool_limits`` would let an early leaver lift the limit
under a running training, or leave the process limited for good).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from threadpoolctl import threadpool_limits

#: Sets a limit and returns what restores the state it found.
Apply = Callable[[], Callable[[], None]]


class SharedLimit:
    """A process-wide limit held while any thread is inside `held`, counted by reference.

    Hand-written: threadpoolctl's own limiter nests but is not reference-counted across threads,
    and torch's thread count is outside threadpoolctl.

    Args:
        apply: Called by the first entrant: sets the limit, returns the restore function the last
            one to leave calls.
        each_entrant: Called by every entrant, in its own thread, after the limit is set (for a
            setting that is partly per OS thread, like torch's).
    """

    def __init__(self, apply: Apply, each_entrant: Callable[[], None] | None = None) -> None:
        self._apply = apply
        self._each_entrant = each_entrant
        self._lock = threading.Lock()
        self._users = 0
        self._restore: Callable[[], None] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._restore = self._apply()
            self._users += 1
            if self._each_entrant is not None:
                self._each_entrant()
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._restore is not None:
                    self._restore()
                    self._restore = None


def _blas_to_one_thread() -> Callable[[], None]:
    return threadpool_limits(limits=1).restore_original_limits


_BLAS = SharedLimit(_blas_to_one_thread)


def single_threaded_blas() -> AbstractContextManager[None]:
    """Limits BLAS/OpenMP pools to one thread for the duration of the block."""
    return _BLAS.held()
