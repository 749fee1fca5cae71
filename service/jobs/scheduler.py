"""Which queued training job runs next: tenants in turn, each tenant's jobs in order.

When a worker frees, the tenant that was served longest ago (a tenant never served, or idle
since, first) gets it, so one tenant's queue of jobs can delay another's by at most one job per
worker: a tenant's fifth job never runs before another tenant's first. Pure bookkeeping, no
asyncio: the job manager calls it on the event loop.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Per-tenant FIFO queues served round-robin.

    A tenant's turn is remembered while it has jobs queued or running (`release` ends a running
    one), and forgotten once it has neither, so memory follows active tenants only.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}
        self._running: dict[str, int] = {}
        self._last_turn: dict[str, int] = {}  # tenant -> turn number it was last served at
        self._arrival: dict[str, int] = {}  # tenant -> when its queue last became non-empty
        self._clock = 0

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def push(self, tenant: str, item: T) -> None:
        """Queues ``item`` behind ``tenant``'s other queued items."""
        queue = self._queues.get(tenant)
        if queue is None:
            self._clock += 1
            queue = self._queues[tenant] = deque()
            self._arrival[tenant] = self._clock
        queue.append(item)

    def pop(self) -> tuple[str, T] | None:
        """Takes the next item to run, and counts it as running until `release`; None if empty."""
        if not self._queues:
            return None
        # Least recently served first; a tenant with no remembered turn has waited longest.
        tenant = min(self._queues, key=lambda t: (self._last_turn.get(t, 0), self._arrival[t]))
        queue = self._queues[tenant]
        item = queue.popleft()
        if not queue:
            del self._queues[tenant]
            del self._arrival[tenant]
        self._clock += 1
        self._last_turn[tenant] = self._clock
        self._running[tenant] = self._running.get(tenant, 0) + 1
        return tenant, item

    def remove(self, tenant: str, item: T) -> bool:
        """Takes a queued item out (a job cancelled before it ran); False if it is not queued."""
        queue = self._queues.get(tenant)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[tenant]
            del self._arrival[tenant]
            self._forget_if_idle(tenant)
        return True

    def release(self, tenant: str) -> None:
        """Marks one of ``tenant``'s running items as finished."""
        left = self._running.get(tenant, 0) - 1
        if left > 0:
            self._running[tenant] = left
        else:
            self._running.pop(tenant, None)
            self._forget_if_idle(tenant)

    def _forget_if_idle(self, tenant: str) -> None:
        if tenant not in self._queues and tenant not in self._running:
            self._last_turn.pop(tenant, None)
