"""The fair batcher: tenants in turn (deficit round robin), own rows, errors, cancel, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from service.backbones.batcher import CallPolicy, FairBatcher
from service.backbones.fair_queue import Entry, FairQueue
from service.errors import Unavailable


def _entry(tenant: str, cost: float = 10.0, size: int = 1, work: str = "") -> Entry[str]:
    return Entry(tenant, cost, size, work or tenant)


def _always(call: list[Entry[str]], entry: Entry[str]) -> bool:
    return True


def _alone(call: list[Entry[str]], entry: Entry[str]) -> bool:
    return False


def _alive(work: str) -> bool:
    return True


def _calls(queue: FairQueue[str], fits=_alone, alive=_alive, limit: int = 100) -> list[list[str]]:
    """Every call until the queue is empty, as lists of the entries' work."""
    calls = []
    for _ in range(limit):
        call, _dropped = queue.pop_call(fits, alive)
        if not call:
            break
        calls.append([entry.work for entry in call])
    assert not queue
    return calls


def test_a_newcomer_gets_the_next_call_however_much_another_tenant_has_queued() -> None:
    queue: FairQueue[str] = FairQueue(quantum=10)
    for index in range(20):
        queue.push(_entry("a", work=f"a{index}"))
    first, _ = queue.pop_call(_alone, _alive)  # a's call in flight
    queue.push(_entry("b", work="b0"))
    assert [e.work for e in first] == ["a0"]
    assert _calls(queue)[0] == ["b0"]


def test_busy_tenants_alternate_and_get_equal_cost() -> None:
    """a's entries cost twice b's: per turn b takes two where a takes one."""
    queue: FairQueue[str] = FairQueue(quantum=10)
    for index in range(6):
        queue.push(_entry("a", cost=10, work=f"a{index}"))
    for index in range(12):
        queue.push(_entry("b", cost=5, work=f"b{index}"))
    calls = _calls(queue, fits=_always)
    flat = [work for call in calls for work in call]
    assert sorted(flat) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(12)])
    # Within each tenant, its own order is kept.
    assert [w for w in flat if w[0] == "a"] == [f"a{i}" for i in range(6)]
    # Over any prefix, the cost served to each differs by at most one quantum and a bit.
    served = {"a": 0.0, "b": 0.0}
    for call in calls:
        for work in call:
            served[work[0]] += 10 if work[0] == "a" else 5
        assert abs(served["a"] - served["b"]) <= 20


def test_one_call_per_turn_when_calls_hold_one_entry() -> None:
    queue: FairQueue[str] = FairQueue(quantum=10)
    for tenant in "abc":
        for index in range(3):
            queue.push(_entry(tenant, work=f"{tenant}{index}"))
    order = [call[0] for call in _calls(queue)]
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_a_call_closes_when_the_next_entry_does_not_fit() -> None:
    queue: FairQueue[str] = FairQueue(quantum=100)
    queue.push(_entry("b", size=1, work="b0"))
    queue.push(_entry("a", size=64, work="a0"))
    queue.push(_entry("c", size=1, work="c0"))

    def room_for_64(call: list[Entry[str]], entry: Entry[str]) -> bool:
        return sum(e.size for e in call) + entry.size <= 64

    calls = _calls(queue, fits=room_for_64)
    assert calls == [["b0"], ["a0", "c0"]] or calls == [["b0"], ["a0"], ["c0"]]


def test_a_tenant_in_debt_sits_out_turns() -> None:
    """An entry costing three quanta runs once its tenant has been credited three turns."""
    queue: FairQueue[str] = FairQueue(quantum=10)
    queue.push(_entry("big", cost=30, work="big"))
    for index in range(5):
        queue.push(_entry("small", cost=10, work=f"s{index}"))
    order = [call[0] for call in _calls(queue)]
    assert order.index("big") == 2  # two turns of small pass while big saves up


def test_dead_entries_are_dropped_and_discard_removes_a_request() -> None:
    queue: FairQueue[str] = FairQueue(quantum=10)
    for work in ("a-live", "a-dead", "a-gone"):
        queue.push(_entry("a", size=2, work=work))
    assert queue.items == 6
    assert queue.discard("a", lambda work: work == "a-gone") == 2
    call, dropped = queue.pop_call(_always, lambda work: work != "a-dead")
    assert [e.work for e in call] == ["a-live"]
    assert [e.work for e in dropped] == ["a-dead"]
    assert queue.items == 0 and not queue


class Recorder:
    """A call runner that embeds item k as the row [k, k] and records each call. Calls that
    `holds` (by their items) wait for `gate`, so a test decides when they end, without a clock."""

    def __init__(self, holds: Callable[[list[int]], bool] = lambda items: False) -> None:
        self.calls: list[list[int]] = []
        self.fail = False
        self.holds = holds
        self.gate = asyncio.Event()
        self.held = asyncio.Event()  # set when a held call has started

    async def __call__(self, items: list[int]) -> np.ndarray:
        self.calls.append(list(items))
        if self.holds(items):
            self.held.set()
            await self.gate.wait()
        if self.fail:
            raise ValueError("backend broke")
        return np.array([[k, k] for k in items], dtype=np.float32)


def _every_call(items: list[int]) -> bool:
    return True


async def _until_queued(batcher: FairBatcher[int, np.ndarray], items: int) -> None:
    """Yields to the loop until `items` wait in the batcher (submits queue at their first step)."""
    while batcher.queued_items < items:
        await asyncio.sleep(0)


def _batcher(
    run: Recorder, size: int = 4, wait: float = 0.0, lanes: int = 1
) -> FairBatcher[int, np.ndarray]:
    """Calls of at most `size` items; a request is planned in groups of `size`; with `lanes`,
    one call per tenant runs at a time."""
    return FairBatcher(
        "test",
        run,
        CallPolicy(
            plan=lambda items: [
                list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)
            ],
            cost=len,
            fits=lambda call, group: len(call) + len(group) <= size,
            quantum=float(size),
        ),
        max_wait_s=wait,
        fill_items=size,
        max_in_flight=lanes,
        one_call_per_tenant=lanes > 1,
    )


def test_requests_waiting_together_share_a_call_and_get_their_own_rows() -> None:
    run = Recorder(holds=lambda items: items == [-1])

    async def scenario() -> list[list[np.ndarray]]:
        batcher = _batcher(run, size=16)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit("x", [-1]))
        await run.held.wait()  # the one lane is taken: the next requests wait together
        requests = [[10 * r + i for i in range(r + 1)] for r in range(5)]
        waiting = asyncio.gather(
            *(batcher.submit(f"t{r % 2}", items) for r, items in enumerate(requests))
        )
        await _until_queued(batcher, 15)
        run.gate.set()
        results = await waiting
        await busy
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    for r, rows in enumerate(results):
        assert [row[0] for row in rows] == [10 * r + i for i in range(r + 1)]
    assert len(run.calls) == 2  # the held call, then all 15 items, which fit one call


def test_a_large_request_is_split_and_another_tenant_goes_next() -> None:
    run = Recorder(holds=lambda items: items == [100, 101, 102, 103])

    async def scenario() -> None:
        batcher = _batcher(run, size=4)
        batcher.start()
        large = asyncio.ensure_future(batcher.submit("a", list(range(100, 140))))
        await run.held.wait()  # a's first call is in flight
        small = asyncio.ensure_future(batcher.submit("b", [7]))
        await _until_queued(batcher, 36 + 1)
        run.gate.set()
        assert (await small)[0][0] == 7
        await large
        await batcher.close()

    asyncio.run(scenario())
    assert len(run.calls) == 11  # 10 calls of a's 40 items, 1 of b's
    assert run.calls.index([7]) == 1  # right after the call in flight
    assert all(len(call) <= 4 for call in run.calls)


def test_another_tenants_request_runs_beside_a_long_call_in_a_free_lane() -> None:
    """Two lanes: b's request does not wait for a's call in flight; a never takes both lanes."""
    run = Recorder(holds=lambda items: items[0] >= 100)  # a's calls wait for the gate
    in_flight: list[list[int]] = []
    overlaps: list[tuple[list[int], ...]] = []  # the calls in flight whenever one starts

    async def tracked(items: list[int]) -> np.ndarray:
        in_flight.append(items)
        overlaps.append(tuple(in_flight))
        try:
            return await run(items)
        finally:
            in_flight.remove(items)

    async def scenario() -> None:
        batcher = _batcher(run, size=4, lanes=2)
        batcher._run = tracked  # the recorder, counting overlaps
        batcher.start()
        large = asyncio.ensure_future(batcher.submit("a", list(range(100, 112))))
        await run.held.wait()  # a's first call is in flight, and stays there
        # b is answered while a's call is still held: it did not wait for it. (The timeout only
        # turns a hang into a failure.)
        assert (await asyncio.wait_for(batcher.submit("b", [7]), 30))[0][0] == 7
        assert not large.done()
        run.gate.set()
        await large
        await batcher.close()

    asyncio.run(scenario())
    assert run.calls[1] == [7]
    assert ([100, 101, 102, 103], [7]) in overlaps  # b ran beside a's first call
    # a's three calls ran one after another: never two of a's at once.
    assert all(sum(call[0] >= 100 for call in calls) <= 1 for calls in overlaps)


def test_an_error_reaches_every_request_of_the_call_and_the_batcher_lives_on() -> None:
    run = Recorder()

    async def scenario() -> tuple[list[object], list[np.ndarray]]:
        batcher = _batcher(run, size=8, wait=0.02)
        batcher.start()
        run.fail = True
        failed = await asyncio.gather(
            *(batcher.submit("t", [i]) for i in range(3)), return_exceptions=True
        )
        run.fail = False
        after = await batcher.submit("t", [7])
        await batcher.close()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(e, ValueError) for e in failed)
    assert after[0][0] == 7


def test_a_cancelled_request_is_never_computed_not_even_its_later_calls() -> None:
    run = Recorder(holds=lambda items: items[0] >= 100)

    async def scenario() -> None:
        batcher = _batcher(run, size=4)
        batcher.start()
        gone = asyncio.ensure_future(batcher.submit("a", list(range(100, 112))))
        await run.held.wait()  # its first call is in flight
        gone.cancel()
        kept = asyncio.ensure_future(batcher.submit("b", [3]))
        await _until_queued(batcher, 1)
        run.gate.set()
        assert (await kept)[0][0] == 3
        with pytest.raises(asyncio.CancelledError):
            await gone
        await batcher.close()

    asyncio.run(scenario())
    assert run.calls == [[100, 101, 102, 103], [3]]


def test_work_past_its_deadline_is_dropped_and_the_request_fails() -> None:
    run = Recorder(holds=_every_call)

    async def scenario() -> None:
        batcher = _batcher(run, size=4)
        batcher.start()
        loop = asyncio.get_running_loop()
        busy = asyncio.ensure_future(batcher.submit("a", [1]))
        await run.held.wait()
        # Queued behind the call in flight, with a deadline that has passed when its turn comes.
        late = asyncio.ensure_future(
            batcher.submit("b", list(range(200, 212)), deadline=loop.time() - 1)
        )
        await _until_queued(batcher, 12)
        run.gate.set()
        with pytest.raises(Unavailable, match="deadline"):
            await late
        await busy
        await batcher.close()

    asyncio.run(scenario())
    assert run.calls == [[1]]


def test_a_tenants_queued_requests_are_planned_together() -> None:
    """Items sorted across requests, as one request's are: [9, 2] and [1, 8] run as [1, 2], [8, 9]."""
    run = Recorder(holds=lambda items: items == [0])

    def sorted_pairs(items: list[int]) -> list[list[int]]:
        order = sorted(range(len(items)), key=items.__getitem__)
        return [order[i : i + 2] for i in range(0, len(order), 2)]

    async def scenario() -> list[list[np.ndarray]]:
        batcher: FairBatcher[int, np.ndarray] = FairBatcher(
            "test",
            run,
            CallPolicy(plan=sorted_pairs, cost=len, fits=lambda call, group: False, quantum=2.0),
            coalesce_items=8,
        )
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit("t", [0]))
        await run.held.wait()  # the runner is busy: the next two wait together
        waiting = asyncio.gather(batcher.submit("t", [9, 2]), batcher.submit("t", [1, 8]))
        await _until_queued(batcher, 4)
        run.gate.set()
        results = await waiting
        await busy
        await batcher.close()
        return results

    first, second = asyncio.run(scenario())
    assert run.calls == [[0], [1, 2], [8, 9]]
    assert [row[0] for row in first] == [9, 2] and [row[0] for row in second] == [1, 8]


def test_a_late_request_planned_with_a_live_one_is_taken_out_of_the_call() -> None:
    """[9, 2] (late by the time its call runs) and [1, 8] are planned as one group: the call
    computes [1, 8] alone; the late request fails and its items are never computed."""
    run = Recorder(holds=lambda items: items == [0])

    def one_group(items: list[int]) -> list[list[int]]:
        return [list(range(len(items)))]

    async def scenario() -> None:
        batcher: FairBatcher[int, np.ndarray] = FairBatcher(
            "test",
            run,
            CallPolicy(plan=one_group, cost=len, fits=lambda call, group: False, quantum=4.0),
            coalesce_items=8,
        )
        batcher.start()
        loop = asyncio.get_running_loop()
        busy = asyncio.ensure_future(batcher.submit("t", [0]))
        await run.held.wait()  # the runner is busy: the next two are planned together
        late = asyncio.ensure_future(batcher.submit("t", [9, 2], deadline=loop.time() - 1))
        kept = asyncio.ensure_future(batcher.submit("t", [1, 8]))
        await _until_queued(batcher, 4)
        assert len(batcher._queue.entries("t")) == 1  # one group of both requests
        run.gate.set()
        assert [row[0] for row in await kept] == [1, 8]
        with pytest.raises(Unavailable, match="deadline"):
            await late
        await busy
        await batcher.close()

    asyncio.run(scenario())
    assert run.calls == [[0], [1, 8]]
