"""Stopping a training run from outside its thread: cooperative checkpoints in the fit loops.

A thread cannot be killed, so a cancelled or timed-out training must stop itself. `train_head`
installs the caller's ``should_stop`` for the duration of the run; the long loops (mlp epochs and
batches, cross-validation candidates and folds, the stages of `train_head`) call `checkpoint`,
which raises `TrainingStopped` once it returns True. The installed check lives in a context
variable, so concurrent trainings on other threads each see only their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from heads.errors import HeadError

#: Returns True once the training must stop (e.g. ``threading.Event.is_set``).
StopCheck = Callable[[], bool]

_check: ContextVar[StopCheck | None] = ContextVar("heads_stop_check", default=None)


class TrainingStopped(HeadError):
    """Raised at a checkpoint when the caller asked the training to stop; nothing is returned."""


@contextmanager
def stop_checks(should_stop: StopCheck | None) -> Iterator[None]:
    """Makes `checkpoint` consult ``should_stop`` inside the block (on this thread only)."""
    token = _check.set(should_stop)
    try:
        yield
    finally:
        _check.reset(token)


def checkpoint() -> None:
    """Raises `TrainingStopped` if the running training was asked to stop; cheap otherwise."""
    check = _check.get()
    if check is not None and check():
        raise TrainingStopped("training was asked to stop")
