"""Micro-batching: concurrent requests share backbone inference calls.

A queue created on the running loop, one future per request, a size and a time limit, errors
delivered to every waiter, cancelled requests dropped before the batch is built (the pattern of
MLServer's adaptive batcher and TEI's queue). Overload is refused at once, never queued unboundedly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from service import metrics
from service.errors import ResourceExhausted

log = logging.getLogger(__name__)

Item = TypeVar("Item")


@dataclass
class _Request(Generic[Item]):
    items: list[Item]
    future: asyncio.Future[np.ndarray] = field(repr=False)


class MicroBatcher(Generic[Item]):
    """Collects the items of concurrent requests and hands them to `run` in rounds.

    Args:
        name: Backbone name (metrics label).
        run: Embeds a list of items, returning one row per item in the same order; it does its
            own splitting into inference calls. Awaited once per round, one round at a time.
        max_round_items: Most items collected into one round.
        max_wait_s: How long an idle batcher waits for more requests after the first one.
        max_queued_items: Items that may wait; beyond it `submit` raises ResourceExhausted.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[list[Item]], Awaitable[np.ndarray]],
        max_round_items: int,
        max_wait_s: float,
        max_queued_items: int,
    ) -> None:
        self._name = name
        self._run = run
        self._max_round_items = max_round_items
        self._max_wait_s = max_wait_s
        self._max_queued_items = max_queued_items
        self._queue: asyncio.Queue[_Request[Item]] | None = None
        self._queued_items = 0
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.QUEUE_DEPTH.labels(backbone=name)

    def start(self) -> None:
        """Starts the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher-{self._name}"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, items: list[Item]) -> np.ndarray:
        """Queues one request's items and waits for their embeddings (one row per item).

        Raises:
            ResourceExhausted: too many items are already waiting.
        """
        if self._queue is None:
            raise RuntimeError("batcher not started")
        if self._queued_items + len(items) > self._max_queued_items:
            raise ResourceExhausted(
                f"backbone '{self._name}' is overloaded ({self._queued_items} inputs waiting); retry later"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queued_items += len(items)
        self._depth.set(self._queued_items)
        self._queue.put_nowait(_Request(items, future))
        try:
            return await future
        finally:
            if not future.done():  # the caller was cancelled while waiting
                future.cancel()

    async def _collect(self) -> list[_Request[Item]]:
        """One round: the first request, then whatever joins within the size and time limits."""
        assert self._queue is not None
        round_ = [await self._queue.get()]
        size = len(round_[0].items)
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while size < self._max_round_items:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                request = self._queue.get_nowait()
            round_.append(request)
            size += len(request.items)
        return round_

    async def _loop(self) -> None:
        while True:
            round_ = await self._collect()
            taken = sum(len(r.items) for r in round_)
            self._queued_items -= taken
            self._depth.set(self._queued_items)
            # Requests whose callers went away are dropped before any work is done for them.
            live = [r for r in round_ if not r.future.done()]
            if not live:
                continue
            items = [item for r in live for item in r.items]
            try:
                rows = await self._run(items)
            except Exception as error:  # delivered to every waiter of the round
                for request in live:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            start = 0
            for request in live:
                end = start + len(request.items)
                if not request.future.done():
                    request.future.set_result(rows[start:end])
                start = end
