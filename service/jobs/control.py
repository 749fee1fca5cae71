"""Stopping one job: a flag its training thread polls, the reason, and the point of no return."""

from __future__ import annotations

import threading
from enum import StrEnum


class StopReason(StrEnum):
    """Why a job was told to stop; the first reason given wins."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SHUTDOWN = "shutdown"
    #: Another replica took the job over (this replica's lease expired): stop, write nothing.
    LEASE_LOST = "lease_lost"


class JobControl:
    """A per-job stop flag, set once and never cleared.

    The training thread polls `is_set` (through `heads.train_head`'s ``should_stop``) at every
    checkpoint; the event loop sets it from CancelJob, the timeout, shutdown or a lost lease. Publishing is
    atomic and is never interrupted halfway: once `begin_publishing` returns True, `stop`
    refuses, and once a stop was asked, publishing refuses.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: StopReason | None = None
        self._publishing = False

    @property
    def reason(self) -> StopReason | None:
        """Why the job was stopped, or None."""
        return self._reason

    def is_set(self) -> bool:
        """True once the job must stop."""
        return self._event.is_set()

    def stop(self, reason: StopReason) -> bool:
        """Asks the job to stop; False when it is already publishing (too late)."""
        with self._lock:
            if self._publishing:
                return False
            if self._reason is None:
                self._reason = reason
            self._event.set()
            return True

    def begin_publishing(self) -> bool:
        """Passes the point of no return; False if the job was stopped first."""
        with self._lock:
            if self._event.is_set():
                return False
            self._publishing = True
            return True
