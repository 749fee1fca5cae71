"""The fair batcher: concurrent requests of many tenants share a backbone's calls, in turn.

Each request is cut into groups when it is queued (the runtime's planner: texts sorted by length
and cut by `plan_batches`, so a large request pads as little as it did alone) and the groups wait
in their tenant's queue. A small request is planned together with its tenant's groups still queued
(up to `coalesce_items` items in all), so a tenant's concurrent small requests pad as little as
one request would. Calls are built from the tenants in turn
(`FairQueue`, deficit round robin): a tenant's large request runs as several calls, and another
tenant's small request waits for about the call in flight plus its own. Groups share a call when
the runtime allows it (`fits`).

Work nobody waits for is never computed: a request whose caller was cancelled leaves the queues at
once, and one whose deadline passed is dropped when it is reached, its remaining groups too; its
items in a group planned with another request's are taken out of the call before it runs.
Errors of a call reach every request in it; the batcher lives on.

With tracing on, a request queued in the span of its RPC (or training job) gets two kinds of
child spans: `<trace_name>.queue_wait`, from its queuing to its first call, and for each call
that computes some of its items `<trace_name>.batch`, with the call's batch size. A call is
shared by requests of many traces, so each of them records the call in its own trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service import metrics, tracing
from service.backbones.fair_queue import Entry, FairQueue
from service.errors import Unavailable

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

Plan = Callable[[list[Any]], list[list[int]]]
Cost = Callable[[list[Any]], float]
Fits = Callable[[list[Any], list[Any]], bool]

# Requests larger than this are planned off the event loop (the planner is Python).
PLAN_ON_LOOP_ITEMS = 256


@dataclass(frozen=True)
class CallPolicy:
    """How a backbone's work is cut into calls, whatever runtime runs them."""

    plan: Plan  # a request's items -> groups of indices, each fit for one call
    cost: Cost  # what a group costs (padded tokens, images)
    fits: Fits  # whether a group may join a call that holds some items already
    quantum: float  # the cost of one full call


@dataclass(eq=False)
class _Request:
    tenant: str
    items: list[Any]
    deadline: float | None
    future: asyncio.Future[list[Any]] = field(repr=False)
    results: list[Any] = field(repr=False)
    pending: int = 0  # groups holding some of its items, not yet computed
    trace: object | None = field(default=None, repr=False)  # its span's (`tracing.capture`)
    queued_ns: int = 0  # when it was queued (`time.time_ns`), when traced
    waited: bool = False  # its queue wait is recorded (its first call started)

    def alive(self, now: float) -> bool:
        return not self.future.done() and (self.deadline is None or now < self.deadline)


@dataclass(frozen=True, eq=False)
class _Group:
    parts: list[tuple[_Request, int]]  # (request, index of the item in it)

    def items(self) -> list[Any]:
        return [request.items[index] for request, index in self.parts]

    def requests(self) -> list[_Request]:
        return list(dict.fromkeys(request for request, _ in self.parts))


def _alive_at(now: float) -> Callable[[_Group], bool]:
    return lambda group: any(request.alive(now) for request in group.requests())


def _all_done(group: _Group) -> bool:
    return all(request.future.done() for request in group.requests())


class FairBatcher(Generic[Item, Result]):
    """Feeds one backbone's runtime (or the image decoders) from per-tenant queues, in turn.

    Args:
        name: Backbone name (metrics label).
        run: Computes one call: items in, one result per item out (a row, a decoded image).
        policy: How items become calls: the plan that cuts a request's items into groups, each
            group's cost, whether a group may join a call (False: one group a call), and the
            cost of a full call (each tenant's credit per turn).
        max_in_flight: Calls running at once (ONNX Runtime: its lanes; more for Triton, which
            batches concurrent calls itself; the pool size for decoders).
        one_call_per_tenant: A tenant with a call in flight sits out the next ones, so the other
            lanes are kept for other tenants: a small request runs beside another tenant's
            long call instead of behind it (ONNX Runtime; one tenant alone gets one lane).
        max_wait_s: How long an idle batcher waits for more work before the first call.
        fill_items: Items that end that wait early (a full call).
        coalesce_items: Most items of a tenant's queued requests planned together (0: each
            request alone, as on Triton, whose own batcher merges requests).
        depth_gauge: Whether this batcher reports the backbone's queue depth.
        trace_name: The prefix of its spans' names (see the module's doc).
    """

    def __init__(
        self,
        name: str,
        run: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        policy: CallPolicy,
        max_in_flight: int = 1,
        max_wait_s: float = 0.0,
        fill_items: int = 1,
        coalesce_items: int = 0,
        depth_gauge: bool = True,
        one_call_per_tenant: bool = False,
        trace_name: str = "inference",
    ) -> None:
        self._name = name
        self._trace_name = trace_name
        self._run = run
        self._plan = policy.plan
        self._cost = policy.cost
        self._fits = policy.fits
        self._queue: FairQueue[_Group] = FairQueue(policy.quantum)
        self._max_in_flight = max_in_flight
        self._max_wait_s = max_wait_s
        self._fill_items = fill_items
        self._coalesce_items = min(coalesce_items, PLAN_ON_LOOP_ITEMS)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._one_call_per_tenant = one_call_per_tenant
        self._tenants_in_flight: dict[asyncio.Task[None], frozenset[str]] = {}
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.QUEUE_DEPTH.labels(backbone=name) if depth_gauge else None
        self._dropped = metrics.DROPPED_INPUTS.labels(backbone=name)

    @property
    def queued_items(self) -> int:
        """Items waiting for a call (not the ones in flight)."""
        return self._queue.items

    def start(self) -> None:
        """Starts the dispatch loop on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher-{self._name}"
        )

    async def close(self) -> None:
        """Stops dispatching; calls in flight are cancelled, queued requests fail."""
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        while self._queue:
            call, dropped = self._queue.pop_call(lambda call, entry: True, lambda work: True)
            for entry in (*call, *dropped):
                for request in entry.work.requests():
                    if not request.future.done():
                        request.future.set_exception(
                            Unavailable(f"backbone '{self._name}' is shutting down")
                        )

    async def submit(
        self, tenant: str, items: list[Item], deadline: float | None = None
    ) -> list[Result]:
        """Queues one request's items for `tenant` and waits for one result per item, in order.

        Args:
            tenant: Whose queue the work waits in.
            items: The request's items (preprocessed).
            deadline: When the caller gives up, on the loop's clock; then the work not yet
                started is dropped and the request fails.

        Raises:
            Unavailable: the deadline passed first, or the batcher is shutting down.
        """
        if self._wakeup is None:
            raise RuntimeError("batcher not started")
        loop = asyncio.get_running_loop()
        request = _Request(tenant, items, deadline, loop.create_future(), [None] * len(items))
        if tracing.enabled():
            request.trace, request.queued_ns = tracing.capture(), time.time_ns()
        if len(items) > PLAN_ON_LOOP_ITEMS:
            # Planning a large request is a dynamic programme in Python: off the event loop.
            plan = await asyncio.to_thread(self._plan, items)
            self._queue_groups(tenant, [(request, i) for i in range(len(items))], plan)
        else:
            self._queue_small(tenant, request)
        self._show_depth()
        self._wakeup.set()
        try:
            return await request.future
        finally:
            if not request.future.done():
                request.future.cancel()  # the caller went away: nobody wants the rest
            if request.pending:
                removed = self._queue.discard(tenant, _all_done)
                self._dropped.inc(removed)
                self._show_depth()

    def _queue_small(self, tenant: str, request: _Request) -> None:
        """Plans a request with its tenant's queued groups when they fit together."""
        parts = [(request, index) for index in range(len(request.items))]
        queued = self._queue.entries(tenant) if self._coalesce_items else []
        waiting = [
            part for entry in queued for part in entry.work.parts if not part[0].future.done()
        ]
        if not queued or len(waiting) + len(parts) > self._coalesce_items:
            self._queue_groups(tenant, parts, self._plan(request.items))
            return
        for entry in queued:
            for owner in entry.work.requests():
                owner.pending -= 1
        parts = waiting + parts
        self._queue_groups(tenant, parts, self._plan([r.items[i] for r, i in parts]))
        # The joint plan replaces the old groups; queued first, so the tenant keeps its turn.
        replaced = {id(entry.work) for entry in queued}
        self._queue.discard(tenant, lambda group: id(group) in replaced)

    def _queue_groups(
        self, tenant: str, parts: list[tuple[_Request, int]], plan: list[list[int]]
    ) -> None:
        for indices in plan:
            if not indices:
                continue
            group = _Group([parts[i] for i in indices])
            for request in group.requests():
                request.pending += 1
            self._queue.push(Entry(tenant, self._cost(group.items()), len(indices), group))

    async def _loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            idle = not self._queue and not self._in_flight
            while (
                not self._queue.waiting(self._busy()) or len(self._in_flight) >= self._max_in_flight
            ):
                self._wakeup.clear()
                await self._wakeup.wait()
            if idle and not self._in_flight and self._max_wait_s > 0:
                # Only after idling: under load, work gathers while the call in flight runs.
                await self._fill(loop)
            call, dropped = self._queue.pop_call(
                self._entry_fits, _alive_at(loop.time()), self._busy()
            )
            self._drop(dropped)
            self._show_depth()
            if call:
                task = loop.create_task(self._run_call([entry.work for entry in call]))
                self._in_flight.add(task)
                self._tenants_in_flight[task] = frozenset(entry.tenant for entry in call)
                task.add_done_callback(self._call_done)

    def _busy(self) -> frozenset[str]:
        """Tenants that sit out the next call: those with a call in flight, when one each."""
        if not self._one_call_per_tenant:
            return frozenset()
        return frozenset().union(*self._tenants_in_flight.values())

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """An idle batcher waits a moment for more requests to share the first call."""
        assert self._wakeup is not None
        deadline = loop.time() + self._max_wait_s
        while self._queue.items < self._fill_items:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _entry_fits(self, call: list[Entry[_Group]], entry: Entry[_Group]) -> bool:
        items = [item for taken in call for item in taken.work.items()]
        return self._fits(items, entry.work.items())

    def _drop(self, dropped: list[Entry[_Group]]) -> None:
        """Dropped groups: their requests were cancelled or are past their deadline."""
        for entry in dropped:
            self._dropped.inc(entry.size)
            self._fail_late(entry.work.requests())

    def _fail_late(self, requests: list[_Request]) -> None:
        """Fails the requests whose work was dropped and that are not cancelled: late ones."""
        for request in requests:
            if not request.future.done():  # not cancelled, so its deadline passed
                request.future.set_exception(
                    Unavailable(
                        f"the request's deadline passed before backbone '{self._name}' reached it"
                    )
                )

    def _wanted(self, groups: list[_Group]) -> list[_Group]:
        """The call's groups without the items of requests gone (cancelled, late) since queued.

        A group planned from several requests of a tenant (`coalesce_items`) stays queued while
        any of them is alive, so a request that went away may still have items in it: they are
        taken out here, just before the call, so that the runtime never computes them.
        """
        now = asyncio.get_running_loop().time()
        wanted: list[_Group] = []
        for group in groups:
            parts = [part for part in group.parts if part[0].alive(now)]
            if len(parts) < len(group.parts):
                self._dropped.inc(len(group.parts) - len(parts))
                self._fail_late([r for r in group.requests() if not r.alive(now)])
            if parts:
                wanted.append(group if len(parts) == len(group.parts) else _Group(parts))
        return wanted

    async def _run_call(self, groups: list[_Group]) -> None:
        groups = self._wanted(groups)
        if not groups:
            return
        items = [item for group in groups for item in group.items()]
        traced = self._traced(groups) if tracing.enabled() else {}
        started = time.time_ns() if traced else 0
        try:
            results = await self._run(items)
        except Exception as error:  # delivered to every request of the call
            self._record_call(traced, started, len(items), type(error).__name__)
            for group in groups:
                for request in group.requests():
                    if not request.future.done():
                        request.future.set_exception(error)
            return
        self._record_call(traced, started, len(items), None)
        start = 0
        for group in groups:
            for (request, index), result in zip(group.parts, results[start:], strict=False):
                request.results[index] = result
            start += len(group.parts)
            for request in group.requests():
                request.pending -= 1
                if request.pending == 0 and not request.future.done():
                    request.future.set_result(request.results)

    def _traced(self, groups: list[_Group]) -> dict[_Request, int]:
        """The call's traced requests, with how many of their items it computes; the queue wait
        of those reaching their first call ends now."""
        traced: dict[_Request, int] = {}
        for group in groups:
            for request, _ in group.parts:
                if request.trace is not None:
                    traced[request] = traced.get(request, 0) + 1
        now = time.time_ns()
        for request in traced:
            if not request.waited:
                request.waited = True
                tracing.record(
                    f"{self._trace_name}.queue_wait", request.trace, request.queued_ns, now,
                    {"transferd.backbone": self._name, "transferd.items": len(request.items)},
                )  # fmt: skip
        return traced

    def _record_call(
        self, traced: dict[_Request, int], started: int, batch_size: int, error: str | None
    ) -> None:
        """One span of the call in each traced request's trace."""
        if not traced:
            return
        ended = time.time_ns()
        for request, items in traced.items():
            tracing.record(
                f"{self._trace_name}.batch", request.trace, started, ended,
                {
                    "transferd.backbone": self._name,
                    "transferd.batch_size": batch_size,  # items of the call, every request's
                    "transferd.items": items,  # this request's among them
                },
                error,
            )  # fmt: skip

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._tenants_in_flight.pop(task, None)
        if self._wakeup is not None:
            self._wakeup.set()

    def _show_depth(self) -> None:
        if self._depth is not None:
            self._depth.set(self._queue.items)
