"""Per-tenant queues served in turn by deficit round robin: what goes into the next call.

Pure logic, no asyncio: `FairBatcher` drives it. Work is queued as entries (one entry is a group of
a request's items that may run in one call, planned when the request is queued), one FIFO per
tenant. A call is built from the tenants in ring order: each tenant, when it needs to, is credited
one quantum per call (the cost of a full call) and takes entries while its deficit covers them and
the call has room. The tenant that opened a call moves to the back of the ring, so the next call
opens with the next tenant: a small request of another tenant waits for about the call in flight
plus its own, however much a busy tenant has queued (the shape of S-LoRA's fair scheduler).

When the next entry of the tenant that opened a call does not fit, the call may still take later
entries of that same tenant that do (a bounded look-ahead): its concurrent requests then share
calls of similar lengths, as one request's items do; other tenants' turns are not touched.

A tenant whose queue empties leaves the ring and forgets its deficit (no banking of credit while
idle). A tenant that becomes busy joins just before the tenant that opened the last call: after
the tenants already waiting, before the one just served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, TypeVar

Work = TypeVar("Work")

# How far past its next entry the tenant that opened a call looks for entries that fit the call.
LOOKAHEAD = 32


@dataclass(frozen=True, eq=False)
class Entry(Generic[Work]):
    """One unit of queued work: a group of items that may run in one call."""

    tenant: str
    cost: float  # what the group costs the runtime (padded tokens, images, pixels)
    size: int  # items in the group
    work: Work


class FairQueue(Generic[Work]):
    """Per-tenant FIFOs of entries, taken out call by call in deficit round robin.

    Args:
        quantum: Credit a tenant gets per call it takes part in: the cost of one full call,
            so that every entry fits in one credit and a busy tenant takes about one full call
            per turn.
    """

    def __init__(self, quantum: float) -> None:
        if quantum <= 0:
            raise ValueError("quantum must be positive")
        self._quantum = quantum
        self._queues: dict[str, deque[Entry[Work]]] = {}
        self._deficit: dict[str, float] = {}
        self._ring: list[str] = []  # busy tenants, in the order they are served
        self._last_opener: str | None = None
        self._items = 0

    @property
    def items(self) -> int:
        """Items queued (entries of requests since gone included, until they are reached)."""
        return self._items

    def __bool__(self) -> bool:
        return bool(self._ring)

    def waiting(self, busy: Collection[str] = ()) -> bool:
        """Whether a tenant outside `busy` has work queued."""
        return any(tenant not in busy for tenant in self._ring)

    def tenants(self) -> list[str]:
        """Busy tenants in the order the next call visits them."""
        return list(self._ring)

    def push(self, entry: Entry[Work]) -> None:
        """Queues an entry at the back of its tenant's queue."""
        queue = self._queues.get(entry.tenant)
        if queue is None:
            queue = self._queues[entry.tenant] = deque()
            self._deficit[entry.tenant] = 0.0
            # Before the tenant just served, after everyone already waiting.
            if self._ring and self._ring[-1] == self._last_opener:
                self._ring.insert(len(self._ring) - 1, entry.tenant)
            else:
                self._ring.append(entry.tenant)
        queue.append(entry)
        self._items += entry.size

    def entries(self, tenant: str) -> list[Entry[Work]]:
        """The tenant's queued entries, oldest first (a copy)."""
        return list(self._queues.get(tenant, ()))

    def discard(self, tenant: str, gone: Callable[[Work], bool]) -> int:
        """Removes the tenant's entries whose work is `gone` (a cancelled request); items removed."""
        queue = self._queues.get(tenant)
        if queue is None:
            return 0
        kept = deque(entry for entry in queue if not gone(entry.work))
        removed = sum(entry.size for entry in queue) - sum(entry.size for entry in kept)
        self._items -= removed
        if kept:
            self._queues[tenant] = kept
        else:
            self._forget(tenant)
        return removed

    def pop_call(
        self,
        fits: Callable[[list[Entry[Work]], Entry[Work]], bool],
        alive: Callable[[Work], bool],
        busy: Collection[str] = (),
    ) -> tuple[list[Entry[Work]], list[Entry[Work]]]:
        """Takes the entries of the next call, tenants in turn.

        Args:
            fits: Whether an entry may join a call that already holds some (never asked for the
                first entry: a lone entry always fits, it was planned within the call limits).
            alive: Whether an entry's work is still wanted; dead entries are dropped on the way.
            busy: Tenants that sit this call out (they have a call in flight already).

        Returns:
            The call's entries (empty when nothing alive is queued for a tenant that is not
            busy), and the dead entries dropped.
        """
        call: list[Entry[Work]] = []
        dropped: list[Entry[Work]] = []
        opener: str | None = None
        # Passes over the ring until someone takes part: each pass credits every tenant it
        # visits once, so a tenant in debt sits out turns until its credit covers its entry.
        while self.waiting(busy) and not call:
            credited: set[str] = set()
            index = 0
            full = False
            while index < len(self._ring) and not full:
                tenant = self._ring[index]
                if tenant in busy:
                    index += 1
                    continue
                queue = self._queues[tenant]
                while queue:
                    entry = queue[0]
                    if not alive(entry.work):
                        queue.popleft()
                        self._items -= entry.size
                        dropped.append(entry)
                        continue
                    if call and not fits(call, entry):
                        full = True
                        if tenant == opener:
                            self._take_fitting(tenant, call, fits, alive, tenant in credited)
                        break
                    if self._deficit[tenant] < entry.cost:
                        if tenant in credited:
                            break  # its turn in this call is used up
                        credited.add(tenant)
                        self._deficit[tenant] += self._quantum
                        if self._deficit[tenant] < entry.cost:
                            break  # in debt from earlier calls: it sits this turn out
                    queue.popleft()
                    self._items -= entry.size
                    self._deficit[tenant] -= entry.cost
                    call.append(entry)
                    opener = opener or tenant
                if queue:
                    index += 1
                else:
                    self._forget(tenant)
        if opener is not None and opener in self._queues:
            self._ring.remove(opener)
            self._ring.append(opener)
        self._last_opener = opener
        return call, dropped

    def _take_fitting(
        self,
        tenant: str,
        call: list[Entry[Work]],
        fits: Callable[[list[Entry[Work]], Entry[Work]], bool],
        alive: Callable[[Work], bool],
        credited: bool,
    ) -> None:
        """The opener's later entries that fit the call, in order, while its credit lasts."""
        queue = self._queues[tenant]
        index = 1
        while index < min(len(queue), LOOKAHEAD + 1):
            entry = queue[index]
            if not alive(entry.work) or not fits(call, entry):
                index += 1
                continue
            if self._deficit[tenant] < entry.cost:
                if credited:
                    return
                credited = True
                self._deficit[tenant] += self._quantum
                if self._deficit[tenant] < entry.cost:
                    return
            del queue[index]
            self._items -= entry.size
            self._deficit[tenant] -= entry.cost
            call.append(entry)

    def _forget(self, tenant: str) -> None:
        del self._queues[tenant]
        del self._deficit[tenant]
        self._ring.remove(tenant)
