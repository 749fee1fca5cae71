"""The fair batcher behind the Embedder, on a deterministic runtime: turns, lanes, dropped work."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.backbones.inputs import Input, TextInput
from service.errors import Unavailable
from service.request_context import set_deadline_in
from tests.support.deterministic_runtime import Call
from tests.support.scenario import run
from tests.support.tiny_backbone import (
    TOPICS,
    TinyStack,
    TinyTextBackbone,
    build_embedder,
    running_embedder,
)

LARGE = TOPICS["sports"][:6]  # three calls of two
SMALL = "bake the bread"
GONE = TOPICS["weather"][0]  # "heavy rain and wind ...": the text of the request that goes away
RUNTIMES = pytest.mark.parametrize("bucketed", [False, True], ids=["embedded", "bucketed"])


def _texts(*texts: str) -> list[Input]:
    return [TextInput(text) for text in texts]


def _holds(backbone: TinyTextBackbone, call: Call, word: str) -> bool:
    token = backbone.token_id(word)
    return any(token in item.ids for item in call.items)


async def _large_then_small(
    stack: TinyStack,
) -> tuple[asyncio.Task, asyncio.Task]:  # type: ignore[type-arg]
    """Tenant a's large request takes the first call (held), then b's small one is queued."""
    runtime = stack.runtime
    runtime.hold()
    large = asyncio.create_task(stack.embedder.embed(stack.name, _texts(*LARGE), tenant="a"))
    await runtime.until(lambda: len(runtime.served_calls) == 1, "a's first call")
    small = asyncio.create_task(stack.embedder.embed(stack.name, _texts(SMALL), tenant="b"))
    await runtime.until(lambda: runtime.submitted("b") == 1, "b's request queued")
    return large, small


def test_a_small_request_goes_next_though_a_large_one_of_another_tenant_is_queued(
    backbone: TinyTextBackbone,
) -> None:
    """One lane: when a's first call ends, b's request (queued after all of a's) runs next, and
    b is answered while two of a's calls are still to run."""

    async def scenario() -> None:
        async with running_embedder(backbone, max_batch_size=2, lanes=1) as stack:
            runtime = stack.runtime
            large, small = await _large_then_small(stack)
            first = runtime.served_calls[0]
            assert not _holds(backbone, first, "bake")
            runtime.let_go(first)
            await runtime.until(lambda: len(runtime.served_calls) == 2, "the next call")
            second = runtime.served_calls[1]
            assert _holds(backbone, second, "bake") and len(second.items) == 1
            runtime.let_go(second)
            np.testing.assert_array_equal((await small).vectors, backbone.vectors([SMALL]))
            assert not large.done()
            assert [call.state for call in runtime.served_calls[2:]] in (["waiting"], [])
            runtime.release()
            np.testing.assert_array_equal((await large).vectors, backbone.vectors(LARGE))
            assert len(runtime.served_calls) == 4

    run(scenario())


def test_another_tenants_request_runs_in_a_free_lane_beside_a_call_in_flight(
    backbone: TinyTextBackbone,
) -> None:
    """Two lanes, one call per tenant: b's request runs beside a's unfinished call, not behind
    a's queue, and is answered while a's first call is still in flight."""

    async def scenario() -> None:
        async with running_embedder(backbone, max_batch_size=2, lanes=2) as stack:
            runtime = stack.runtime
            large, small = await _large_then_small(stack)
            await runtime.until(lambda: len(runtime.served_calls) == 2, "b's call")
            first, second = runtime.served_calls
            assert _holds(backbone, second, "bake") and not _holds(backbone, first, "bake")
            runtime.let_go(second)
            await small
            assert first.state == "waiting" and not large.done()
            runtime.release()
            assert (await large).vectors.shape == (len(LARGE), backbone.card.dim)

    run(scenario())


def test_a_cancelled_request_is_never_run(backbone: TinyTextBackbone) -> None:
    """A request whose caller went away while it was queued leaves the queue: none of its texts
    reaches the model, and the requests behind it still run."""
    cancelled_text = TOPICS["weather"][0]  # "heavy rain and wind ..."

    async def scenario() -> None:
        async with running_embedder(backbone, max_batch_size=2, lanes=1) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            runtime.hold()
            running = asyncio.create_task(embed(stack.name, _texts(SMALL), tenant="a"))
            await runtime.until(lambda: len(runtime.served_calls) == 1, "a's first call")
            queued = asyncio.create_task(embed(stack.name, _texts(cancelled_text), tenant="a"))
            await runtime.until(lambda: runtime.submitted("a") == 2, "a's second request queued")
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            runtime.release()
            await running
            after = await embed(stack.name, _texts("goal"), tenant="a")
            assert after.vectors.shape == (1, backbone.card.dim)
            assert not any(_holds(backbone, call, "rain") for call in runtime.calls)
            assert stack.admission.held("a") == 0

    run(scenario())


def test_work_past_its_deadline_is_dropped_unrun_but_training_has_no_rpc_deadline(
    backbone: TinyTextBackbone,
) -> None:
    """A request whose RPC deadline passed is dropped when the batcher reaches it (UNAVAILABLE,
    never computed); the training tenant's work, outliving any RPC, ignores that deadline."""

    async def under_a_passed_deadline(stack: TinyStack, training: bool) -> np.ndarray:
        set_deadline_in(0)  # this task's RPC deadline is now
        result = await stack.embedder.embed(
            stack.name, _texts(SMALL), tenant="acme", training=training
        )
        return result.vectors

    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            with pytest.raises(Unavailable, match="deadline"):
                await asyncio.create_task(under_a_passed_deadline(stack, False))
            assert stack.runtime.submitted("acme") == 1 and stack.runtime.served_calls == []
            rows = await asyncio.create_task(under_a_passed_deadline(stack, True))
            np.testing.assert_array_equal(rows, backbone.vectors([SMALL]))
            assert len(stack.runtime.served_calls) == 1

    run(scenario())


def _dropped(stack: TinyStack) -> float:
    return (
        REGISTRY.get_sample_value("transferd_dropped_inputs_total", {"backbone": stack.name}) or 0
    )


def test_a_cancelled_request_planned_with_its_tenants_next_one_is_never_run(
    backbone: TinyTextBackbone,
) -> None:
    """a's two queued requests are planned as one group (a's call is in flight); the first's
    caller goes away: its text is taken out of the group's call, the other is answered."""

    async def scenario() -> None:
        async with running_embedder(backbone, max_batch_size=4, lanes=1) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            runtime.hold()
            running = asyncio.create_task(embed(stack.name, _texts("goal"), tenant="a"))
            await runtime.until(lambda: len(runtime.served_calls) == 1, "a's first call")
            gone = asyncio.create_task(embed(stack.name, _texts(GONE), tenant="a"))
            await runtime.until(lambda: runtime.submitted("a") == 2, "a's second request queued")
            kept = asyncio.create_task(embed(stack.name, _texts(SMALL), tenant="a"))
            await runtime.until(lambda: runtime.submitted("a") == 3, "planned with the second")
            dropped = _dropped(stack)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            runtime.release()
            await running
            np.testing.assert_array_equal((await kept).vectors, backbone.vectors([SMALL]))
            assert not any(_holds(backbone, call, "rain") for call in runtime.calls)
            assert [len(call.items) for call in runtime.served_calls] == [1, 1]
            assert _dropped(stack) == dropped + 1
            assert stack.admission.held("a") == 0

    run(scenario())


@RUNTIMES
def test_a_request_cancelled_behind_another_tenants_call_never_runs_and_frees_its_share(
    backbone: TinyTextBackbone, bucketed: bool
) -> None:
    """b's request waits in the queue behind a's call in flight (one lane); b's caller goes away:
    its share is given back at once, and its text never reaches the runtime."""

    async def scenario() -> None:
        async with running_embedder(backbone, lanes=1, bucketed=bucketed) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            runtime.hold()
            running = asyncio.create_task(embed(stack.name, _texts(SMALL), tenant="a"))
            await runtime.until(lambda: len(runtime.served_calls) == 1, "a's call")
            gone = asyncio.create_task(embed(stack.name, _texts(GONE), tenant="b"))
            await runtime.until(lambda: runtime.submitted("b") == 1, "b's request queued")
            assert stack.admission.held("b") > 0
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert stack.admission.held("b") == 0
            runtime.release()
            await running
            await embed(stack.name, _texts("goal"), tenant="b")
            assert not any(_holds(backbone, call, "rain") for call in runtime.calls)
            assert len(runtime.served_calls) == 2

    run(scenario())


@RUNTIMES
def test_a_request_cancelled_while_tokenizing_never_reaches_the_runtime(
    backbone: TinyTextBackbone, bucketed: bool
) -> None:
    """b's request waits for the tokenizer pool (its one thread busy); b's caller goes away: the
    request never reaches the runtime, and its share is given back."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-tokenize")
    tokenizer_free = threading.Event()

    async def scenario() -> None:
        stack = build_embedder(backbone, pool, bucketed=bucketed)
        try:
            await stack.embedder.start()
            pool.submit(tokenizer_free.wait)  # the tokenizer is busy with someone else's work
            embed = stack.embedder.embed
            gone = asyncio.create_task(embed(stack.name, _texts(GONE), tenant="b"))
            while stack.admission.held("b") == 0:
                await asyncio.sleep(0)  # admitted: then it waits for the tokenizer
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert stack.admission.held("b") == 0
            tokenizer_free.set()
            await embed(stack.name, _texts("goal"), tenant="b")
            assert stack.runtime.submitted("b") == 1
            assert not any(_holds(backbone, call, "rain") for call in stack.runtime.calls)
        finally:
            tokenizer_free.set()
            await stack.embedder.close()

    try:
        run(scenario())
    finally:
        tokenizer_free.set()
        pool.shutdown(wait=True)
