"""The embedding cache in front of the runtime: per tenant, bit-identical, bounded, computed once."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.backbones.embedder import EmbedResult
from service.backbones.embedding_cache import ENTRY_OVERHEAD_BYTES, EmbeddingCache
from service.backbones.inputs import ImageInput, Input, TextInput
from service.errors import Unavailable
from service.request_context import TRAINING_TENANT
from tests.support.scenario import run
from tests.support.tiny_backbone import TOPICS, TinyStack, TinyTextBackbone, running_embedder

SPORTS, COOKING = TOPICS["sports"], TOPICS["cooking"]
CACHE_BYTES = 1 << 20


def _texts(*texts: str) -> list[Input]:
    return [TextInput(text) for text in texts]


def _computed(stack: TinyStack, tenant: str) -> int:
    """Inputs of `tenant` that reached the runtime."""
    return sum(len(s.items) for s in stack.runtime.submissions if s.tenant == tenant)


def _metric(name: str, backbone: str | None = None) -> float:
    labels = {} if backbone is None else {"backbone": backbone}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_second_embed_of_the_same_texts_skips_the_backbone_bit_for_bit(
    backbone: TinyTextBackbone,
) -> None:
    """The tenant's second request is served from the cache: nothing reaches the runtime, the rows
    and the truncation report are the same bits, and the hits and misses are counted."""
    texts = [SPORTS[0], COOKING[1], " ".join(["goal"] * 40)]

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            hits = _metric("transferd_embedding_cache_hits_total", stack.name)
            misses = _metric("transferd_embedding_cache_misses_total", stack.name)
            first = await stack.embedder.embed(stack.name, _texts(*texts), tenant="acme")
            again = await stack.embedder.embed(stack.name, _texts(*texts), tenant="acme")
            assert _computed(stack, "acme") == 3
            assert first.vectors.tobytes() == again.vectors.tobytes()
            assert again.truncated_to == first.truncated_to == [0, 0, 32]
            assert _metric("transferd_embedding_cache_hits_total", stack.name) == hits + 3
            assert _metric("transferd_embedding_cache_misses_total", stack.name) == misses + 3
            assert _metric("transferd_embedding_cache_bytes") > 0

    run(scenario())


def test_tenants_never_share_entries(backbone: TinyTextBackbone) -> None:
    """Another tenant's first request on the same texts is computed: no tenant can tell, by
    timing, what another embedded."""

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            await stack.embedder.embed(stack.name, _texts(*SPORTS[:3]), tenant="acme")
            other = await stack.embedder.embed(stack.name, _texts(*SPORTS[:3]), tenant="globex")
            assert _computed(stack, "globex") == 3
            np.testing.assert_array_equal(other.vectors, backbone.vectors(SPORTS[:3]))

    run(scenario())


def test_training_fills_the_tenants_cache_in_the_training_share(
    backbone: TinyTextBackbone,
) -> None:
    """A training job's embedding takes the "training" share of the backbone but fills the
    tenant's own entries: Predict on the examples just trained on skips the backbone."""

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            embed = stack.embedder.embed
            await embed(stack.name, _texts(*COOKING[:4]), tenant="acme", training=True)
            assert _computed(stack, TRAINING_TENANT) == 4 and _computed(stack, "acme") == 0
            await embed(stack.name, _texts(*COOKING[:4]), tenant="acme")
            await embed(stack.name, _texts(*COOKING[:4]), tenant="acme", training=True)
            assert _computed(stack, "acme") == 0 and _computed(stack, TRAINING_TENANT) == 4

    run(scenario())


async def _held_in_its_call(stack: TinyStack, text: str) -> asyncio.Task[EmbedResult]:
    """acme's Embed of `text`, started and held inside its runtime call."""
    stack.runtime.hold()
    task = asyncio.create_task(stack.embedder.embed(stack.name, _texts(text), tenant="acme"))
    await stack.runtime.until(lambda: len(stack.runtime.served_calls) == 1, "the first call")
    return task


def test_one_input_requested_twice_at_once_is_computed_once(backbone: TinyTextBackbone) -> None:
    """Two requests of one tenant for the same text while it is being computed: the second waits
    for the first's result; a text repeated inside one request is computed once too."""

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            first = await _held_in_its_call(stack, SPORTS[0])
            second = asyncio.create_task(
                embed(stack.name, _texts(SPORTS[0], SPORTS[1], SPORTS[1]), tenant="acme")
            )
            await runtime.until(lambda: _computed(stack, "acme") == 2, "the second's own text")
            runtime.release()
            one, both = await first, await second
            assert _computed(stack, "acme") == 2  # SPORTS[0] once, SPORTS[1] once
            assert one.vectors.tobytes() == both.vectors[0].tobytes()
            assert both.vectors[1].tobytes() == both.vectors[2].tobytes()
            np.testing.assert_array_equal(both.vectors, backbone.vectors([*SPORTS[:2], SPORTS[1]]))

    run(scenario())


def test_a_waiter_computes_the_input_itself_when_the_first_request_gives_up(
    backbone: TinyTextBackbone,
) -> None:
    """The request computing a text is cancelled (its client went away): the request that was
    waiting for that text is not failed with it, it computes the text itself."""

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            first = await _held_in_its_call(stack, SPORTS[0])
            second = asyncio.create_task(embed(stack.name, _texts(SPORTS[0]), tenant="acme"))
            await asyncio.sleep(0)  # the second request now waits for the first's result
            first.cancel()
            await runtime.until(lambda: _computed(stack, "acme") == 2, "the second computes")
            runtime.release()
            result = await second
            np.testing.assert_array_equal(result.vectors, backbone.vectors([SPORTS[0]]))
            with pytest.raises(asyncio.CancelledError):
                await first

    run(scenario())


def test_a_failed_computation_is_not_cached(backbone: TinyTextBackbone) -> None:
    """A broken runtime's error reaches the caller, and the next request computes again."""

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=CACHE_BYTES) as stack:
            stack.runtime.failure = Unavailable("the model fell over")
            with pytest.raises(Unavailable):
                await stack.embedder.embed(stack.name, _texts(SPORTS[0]), tenant="acme")
            stack.runtime.failure = None
            await stack.embedder.embed(stack.name, _texts(SPORTS[0]), tenant="acme")
            assert _computed(stack, "acme") == 2

    run(scenario())


def test_the_cache_stays_within_its_bytes_evicting_the_least_recently_used(
    backbone: TinyTextBackbone,
) -> None:
    """With room for three entries, a fourth text evicts the least recently used one (counted),
    which is then computed again; the others are still hits."""
    entry = backbone.card.dim * 4 + ENTRY_OVERHEAD_BYTES

    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=3 * entry) as stack:
            embed = stack.embedder.embed
            evictions = _metric("transferd_embedding_cache_evictions_total")
            await embed(stack.name, _texts(*SPORTS[:3]), tenant="acme")
            await embed(stack.name, _texts(SPORTS[0]), tenant="acme")  # SPORTS[1] is now oldest
            await embed(stack.name, _texts(SPORTS[3]), tenant="acme")
            assert _metric("transferd_embedding_cache_evictions_total") == evictions + 1
            assert _metric("transferd_embedding_cache_bytes") == 3 * entry
            computed = _computed(stack, "acme")
            await embed(stack.name, _texts(SPORTS[0], SPORTS[2], SPORTS[3]), tenant="acme")
            assert _computed(stack, "acme") == computed
            await embed(stack.name, _texts(SPORTS[1]), tenant="acme")
            assert _computed(stack, "acme") == computed + 1

    run(scenario())


def test_a_zero_budget_turns_the_cache_off(backbone: TinyTextBackbone) -> None:
    async def scenario() -> None:
        async with running_embedder(backbone, cache_bytes=0) as stack:
            for _ in range(2):
                await stack.embedder.embed(stack.name, _texts(SPORTS[0]), tenant="acme")
            assert _computed(stack, "acme") == 2

    run(scenario())


def test_keys_tell_tenants_exports_modalities_and_bytes_apart() -> None:
    """Every part of the key matters: the tenant, the backbone's fingerprint, the modality (a
    text and an image of the same bytes), and every byte of the input."""
    cache = EmbeddingCache(CACHE_BYTES)
    keys = {
        cache.key("acme", "f1", TextInput("goal")),
        cache.key("globex", "f1", TextInput("goal")),
        cache.key("acme", "f2", TextInput("goal")),
        cache.key("acme", "f1", ImageInput(b"goal")),
        cache.key("acme", "f1", TextInput("goal ")),
        cache.key("acme", "f1", TextInput("Goal")),
    }
    assert len(keys) == 6 and None not in keys
    assert cache.key("acme", "f1", TextInput("goal")) in keys
    assert EmbeddingCache(0).key("acme", "f1", TextInput("goal")) is None
