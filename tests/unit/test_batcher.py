"""MicroBatcher: requests share rounds, each gets its own rows, errors reach every waiter."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.backbones.batcher import MicroBatcher
from service.errors import ResourceExhausted


class Recorder:
    """A run function that embeds item k as the row [k, k] and records each round."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.rounds: list[list[int]] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, items: list[int]) -> np.ndarray:
        self.rounds.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError("backend broke")
        return np.array([[k, k] for k in items], dtype=np.float32)


def _batcher(run: Recorder, **overrides: float) -> MicroBatcher[int]:
    options = {"max_round_items": 64, "max_wait_s": 0.02, "max_queued_items": 1000, **overrides}
    return MicroBatcher("test", run, **options)  # type: ignore[arg-type]


def test_concurrent_requests_share_a_round_and_get_their_own_rows() -> None:
    run = Recorder()

    async def scenario() -> list[np.ndarray]:
        batcher = _batcher(run)
        batcher.start()
        requests = [[10 * r + i for i in range(r + 1)] for r in range(5)]
        results = await asyncio.gather(*(batcher.submit(items) for items in requests))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    for r, rows in enumerate(results):
        assert rows[:, 0].tolist() == [10 * r + i for i in range(r + 1)]
    assert len(run.rounds) == 1  # all five arrived within the wait and fit the size limit


def test_round_size_limit_splits_rounds() -> None:
    run = Recorder()

    async def scenario() -> None:
        batcher = _batcher(run, max_round_items=4)
        batcher.start()
        await asyncio.gather(*(batcher.submit([i, i]) for i in range(4)))
        await batcher.close()

    asyncio.run(scenario())
    assert [len(r) for r in run.rounds] == [4, 4]


def test_an_error_reaches_every_waiter_of_the_round_and_the_batcher_lives_on() -> None:
    run = Recorder(fail=True)

    async def scenario() -> tuple[list[object], np.ndarray]:
        batcher = _batcher(run)
        batcher.start()
        failed = await asyncio.gather(
            *(batcher.submit([i]) for i in range(3)), return_exceptions=True
        )
        run.fail = False
        after = await batcher.submit([7])
        await batcher.close()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(e, ValueError) for e in failed)
    assert after.tolist() == [[7, 7]]


def test_overload_is_refused_at_once() -> None:
    run = Recorder(delay=0.2)

    async def scenario() -> list[object]:
        batcher = _batcher(run, max_queued_items=4, max_wait_s=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1, 2, 3]))
        await asyncio.sleep(0.01)  # the first round is running; the queue is empty again
        queued = asyncio.ensure_future(batcher.submit([4, 5, 6]))
        await asyncio.sleep(0)
        with pytest.raises(ResourceExhausted):
            await batcher.submit([7, 8])  # 3 waiting + 2 > 4
        results = await asyncio.gather(first, queued)
        await batcher.close()
        return results

    first, queued = asyncio.run(scenario())
    assert first[:, 0].tolist() == [1, 2, 3] and queued[:, 0].tolist() == [4, 5, 6]


def test_cancelled_requests_are_dropped_before_the_round_runs() -> None:
    run = Recorder(delay=0.1)

    async def scenario() -> None:
        batcher = _batcher(run, max_wait_s=0.0)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit([2]))
        kept = asyncio.ensure_future(batcher.submit([3]))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(busy, kept)
        await batcher.close()

    asyncio.run(scenario())
    assert run.rounds == [[1], [3]]
