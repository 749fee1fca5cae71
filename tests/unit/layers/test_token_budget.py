"""The token budget (TRANSFERD_MAX_BATCH_TOKENS) bounds every call's padded tokens, on the needs
of either runtime: the embedded one (each call padded to its longest text, groups merged) and
Triton's (calls padded to length buckets, never merged by the gateway)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from service.backbones.inputs import TextInput
from service.backbones.modalities.text_batches import MIN_BUCKET
from tests.support.deterministic_runtime import Call, DeterministicRuntime
from tests.support.scenario import run
from tests.support.tiny_backbone import TinyTextBackbone, running_embedder

MAX_BATCH_SIZE = 4
RUNTIMES = pytest.mark.parametrize("bucketed", [False, True], ids=["embedded", "bucketed"])


def _mixed_requests(backbone: TinyTextBackbone, count: int, seed: int = 7) -> list[list[str]]:
    """`count` requests of 1 to 6 texts of 1 to 40 words (over 32 tokens: cut to the model's)."""
    words = [word for word in backbone.vocab if not word.startswith("[")]
    rng = random.Random(seed)
    return [
        [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(rng.randint(1, 6))]
        for _ in range(count)
    ]


def _requests_in(runtime: DeterministicRuntime, call: Call) -> set[int]:
    """The submissions (by index) whose items the call holds."""
    owner = {id(item): index for index, s in enumerate(runtime.submissions) for item in s.items}
    return {owner[id(item)] for item in call.items}


async def _embed_all(
    backbone: TinyTextBackbone, budget: int, bucketed: bool, requests: list[list[str]]
) -> DeterministicRuntime:
    """Every request at once from three tenants, queued behind held calls so that the batcher
    plans, coalesces and merges from full queues; each request gets its own texts' rows."""
    async with running_embedder(
        backbone,
        max_batch_size=MAX_BATCH_SIZE,
        max_batch_tokens=budget,
        bucketed=bucketed,
        capacity_tokens=1 << 16,
    ) as stack:
        runtime = stack.runtime
        runtime.hold()
        tasks = [
            asyncio.create_task(
                stack.embedder.embed(
                    stack.name, [TextInput(t) for t in texts], tenant=f"t{index % 3}"
                )
            )
            for index, texts in enumerate(requests)
        ]
        await runtime.until(lambda: len(runtime.submissions) == len(requests), "all queued")
        runtime.release()
        for texts, result in zip(requests, await asyncio.gather(*tasks), strict=True):
            np.testing.assert_array_equal(result.vectors, backbone.vectors(texts))
        return runtime


@RUNTIMES
def test_every_call_stays_within_the_token_budget(
    backbone: TinyTextBackbone, bucketed: bool
) -> None:
    """Many concurrent requests of mixed lengths from several tenants: no call (warm-up calls
    included) holds more than the budget in padded tokens, bucket rounding counted; the embedded
    runtime's calls merge requests, Triton's never do."""
    budget = 48  # binding: a full call of 32-token texts would be 4 x 32 = 128

    runtime = run(_embed_all(backbone, budget, bucketed, _mixed_requests(backbone, 30)))
    over = [(len(c.items), runtime.padded_tokens(c)) for c in runtime.calls]
    assert all(tokens <= budget for _, tokens in over), over
    full_warm_up = [call for call in runtime.calls if call.warm_up][-1]
    assert len(full_warm_up.items) == budget // MIN_BUCKET  # not max_batch_size x 16 tokens
    merged = [call for call in runtime.served_calls if len(_requests_in(runtime, call)) > 1]
    assert bool(merged) is not bucketed


@RUNTIMES
def test_only_a_lone_text_longer_than_the_budget_goes_over_it(
    backbone: TinyTextBackbone, bucketed: bool
) -> None:
    """A budget below the model's length (24 < 32 tokens): a longer text cannot be cut into calls,
    so it runs alone; every call of two texts or more stays within the budget."""
    budget = 24

    runtime = run(_embed_all(backbone, budget, bucketed, _mixed_requests(backbone, 12, seed=3)))
    over = [call for call in runtime.calls if runtime.padded_tokens(call) > budget]
    assert over and all(len(call.items) == 1 for call in over)
