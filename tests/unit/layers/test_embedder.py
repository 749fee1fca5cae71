"""The Embedder over a deterministic runtime: rows in order, input checks, admission, warm-up."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.backbones.admission import LOCAL_TENANT
from service.backbones.inputs import EmbeddingInput, ImageInput, Input, MissingInput, TextInput
from service.backbones.runtimes.base import BackboneLoadError
from service.errors import InvalidArgument, ResourceExhausted
from service.tenancy.principal import Principal, set_principal
from tests.support.scenario import run
from tests.support.tiny_backbone import TOPICS, TinyTextBackbone, running_embedder

SPORTS, COOKING = TOPICS["sports"], TOPICS["cooking"]


def _texts(*texts: str) -> list[Input]:
    return [TextInput(text) for text in texts]


def test_rows_come_back_in_request_order_and_are_reproducible(backbone: TinyTextBackbone) -> None:
    """A request cut into several calls (sorted by length) still gets its rows in its own order,
    each equal to the text embedded alone; texts of one topic embed closer than across topics."""
    texts = [SPORTS[0], "goal", COOKING[0], SPORTS[2], "bake the bread", COOKING[4]]

    async def scenario() -> tuple[np.ndarray, np.ndarray, int]:
        async with running_embedder(backbone, max_batch_size=2) as stack:
            first = await stack.embedder.embed(stack.name, _texts(*texts))
            again = await stack.embedder.embed(stack.name, _texts(*texts))
            return first.vectors, again.vectors, len(stack.runtime.served_calls)

    first, again, calls = run(scenario())
    assert calls >= 6  # two requests of three calls or more each: the order was rebuilt
    np.testing.assert_array_equal(first, backbone.vectors(texts))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (6, backbone.card.dim) and first.dtype == np.float32
    same_topic, across = float(first[0] @ first[3]), float(first[0] @ first[2])
    assert same_topic > across


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([], "inputs"),
        (_texts(*["goal"] * 9), "inputs"),
        (_texts("goal", "   "), "inputs[1].text"),
        ([TextInput("goal"), MissingInput()], "inputs[1]"),
        ([TextInput("goal"), ImageInput(b"\x89PNG")], "inputs[1].image"),
        (_texts("goal " * 30), "inputs[0].text"),
    ],
    ids=["none", "too-many", "blank", "missing", "image-to-text", "too-long"],
)
def test_bad_inputs_are_refused_naming_the_field_before_any_work(
    backbone: TinyTextBackbone, inputs: list[Input], field: str
) -> None:
    """Each bad input is an InvalidArgument naming its field, raised before admission and
    before the runtime sees anything."""

    async def scenario() -> None:
        async with running_embedder(backbone, max_inputs=8, max_text_bytes=100) as stack:
            with pytest.raises(InvalidArgument) as refused:
                await stack.embedder.embed(stack.name, inputs, tenant="acme")
            assert refused.value.field == field
            assert stack.runtime.submissions == []
            assert stack.admission.held("acme") == 0

    run(scenario())


def test_errors_name_the_callers_fields_and_an_unknown_backbone(backbone: TinyTextBackbone) -> None:
    """Callers that embed part of a request (training) get errors named in the whole request;
    an unknown backbone is named with the choices."""

    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            with pytest.raises(InvalidArgument) as refused:
                await stack.embedder.embed(
                    stack.name,
                    _texts("goal", ""),
                    field="examples",
                    wheres=["examples[6].input", "examples[7].input"],
                )
            assert refused.value.field == "examples[7].input.text"
            with pytest.raises(InvalidArgument) as unknown:
                await stack.embedder.embed("no-such-backbone", _texts("goal"))
            assert unknown.value.field == "backbone"
            assert stack.name in unknown.value.message

    run(scenario())


def test_a_tenant_over_its_share_is_refused_while_others_are_admitted(
    backbone: TinyTextBackbone,
) -> None:
    """Admission: alone, a tenant may use the whole capacity; once another tenant holds some,
    its share halves and its next request is refused (RESOURCE_EXHAUSTED), while a tenant holding
    nothing is still let in. Refused work never reaches the runtime; finished work frees the
    share."""
    text = SPORTS[0]  # 30 bytes: a cost of 32 tokens, the backbone's longest

    async def scenario() -> None:
        async with running_embedder(backbone, capacity_tokens=64) as stack:
            runtime, embed = stack.runtime, stack.embedder.embed
            runtime.hold()
            a1 = asyncio.create_task(embed(stack.name, _texts(text), tenant="a"))
            a2 = asyncio.create_task(embed(stack.name, _texts(text), tenant="a"))
            await runtime.until(lambda: runtime.submitted("a") == 2, "a's two requests admitted")
            assert stack.admission.held("a") == 64  # the whole capacity, alone
            b = asyncio.create_task(embed(stack.name, _texts(text), tenant="b"))
            await runtime.until(lambda: runtime.submitted("b") == 1, "b admitted")
            with pytest.raises(ResourceExhausted, match="share"):
                await embed(stack.name, _texts("goal"), tenant="a")
            assert runtime.submitted("a") == 2
            c = asyncio.create_task(embed(stack.name, _texts(text), tenant="c"))
            await runtime.until(lambda: runtime.submitted("c") == 1, "c admitted")
            runtime.release()
            for task in (a1, a2, b, c):
                assert (await task).vectors.shape == (1, backbone.card.dim)
            assert [stack.admission.held(t) for t in "abc"] == [0, 0, 0]
            await embed(stack.name, _texts(text), tenant="a")  # its share is free again

    run(scenario())


def test_the_calling_tenant_is_the_keys_and_local_without_one(backbone: TinyTextBackbone) -> None:
    """Without an explicit tenant, work counts against the authenticated caller's tenant."""

    async def as_acme(stack_embed, name: str) -> None:
        set_principal(Principal(tenant="acme", key_id="k1"))
        await stack_embed(name, _texts("goal"))

    async def scenario() -> list[str]:
        async with running_embedder(backbone) as stack:
            # A task runs in a copy of the context: the principal stays in it.
            await asyncio.create_task(as_acme(stack.embedder.embed, stack.name))
            await stack.embedder.embed(stack.name, _texts("goal"))
            return [submission.tenant for submission in stack.runtime.submissions]

    assert run(scenario()) == ["acme", LOCAL_TENANT]


def test_texts_over_the_models_length_are_cut_and_reported(backbone: TinyTextBackbone) -> None:
    """A text longer than max_sequence_length is embedded from its first tokens, and the reply
    says how many were kept."""
    long_text = " ".join(["goal"] * 40)

    async def scenario() -> tuple[np.ndarray, list[int]]:
        async with running_embedder(backbone) as stack:
            result = await stack.embedder.embed(stack.name, _texts(long_text, "goal"))
            return result.vectors, result.truncated_to

    vectors, truncated_to = run(scenario())
    assert truncated_to == [32, 0]
    np.testing.assert_array_equal(vectors[0], backbone.vectors([" ".join(["goal"] * 32)])[0])


def test_warm_up_calls_run_before_the_backbone_reports_ready(backbone: TinyTextBackbone) -> None:
    """start() returns, and is_ready() turns true, only once every warm-up call has run: one
    per length the modality plans (16, 24, 32 tokens), then a full call."""

    async def scenario() -> None:
        async with running_embedder(backbone, start=False, max_batch_size=4) as stack:
            runtime = stack.runtime
            runtime.hold()
            starting = asyncio.create_task(stack.embedder.start())
            await runtime.until(lambda: len(runtime.calls) == 1, "the first warm-up call")
            assert not stack.embedder.is_ready()
            runtime.release()
            await starting
            assert stack.embedder.is_ready()
            warm = list(runtime.calls)
            assert all(call.warm_up and call.state == "done" for call in warm)
            assert [[item.length for item in call.items] for call in warm] == [
                [16],
                [24],
                [32],
                [16] * 4,
            ]
            await stack.embedder.embed(stack.name, _texts("goal"))
            assert runtime.calls[: len(warm)] == warm and len(runtime.served_calls) == 1

    run(scenario())


def test_a_backbone_whose_warm_up_fails_never_reports_ready(backbone: TinyTextBackbone) -> None:
    """A model that cannot run its warm-up calls fails start() with BackboneLoadError."""

    async def scenario() -> None:
        async with running_embedder(backbone, start=False) as stack:
            stack.runtime.failure = RuntimeError("no kernel for this shape")
            with pytest.raises(BackboneLoadError, match="no kernel for this shape"):
                await stack.embedder.start()
            assert not stack.embedder.is_ready()

    run(scenario())


def test_backbone_auto_candidates_are_the_inputs_modality_and_mixed_inputs_are_named(
    backbone: TinyTextBackbone,
) -> None:
    """The served backbones of the inputs' one modality; inputs of two kinds, or precomputed
    embeddings, are refused naming the first input that differs."""

    async def scenario() -> None:
        async with running_embedder(backbone) as stack:
            embedder = stack.embedder
            assert [c.card.name for c in embedder.candidates_for(_texts("a", "b"))] == [stack.name]
            mixed = [TextInput("a"), ImageInput(b"\x89PNG"), TextInput("b")]
            with pytest.raises(InvalidArgument) as refused:
                embedder.candidates_for(mixed)
            assert refused.value.field == "examples[1].input"
            assert "one kind: text before, image here" in refused.value.message
            with pytest.raises(InvalidArgument) as embedding:
                embedder.candidates_for([EmbeddingInput(np.array([0.1, 0.2], np.float32))])
            assert embedding.value.field == "examples[0].input"
            with pytest.raises(InvalidArgument) as no_image:
                embedder.candidates_for([ImageInput(b"\x89PNG")])
            assert (
                no_image.value.field == "backbone" and "no image backbone" in no_image.value.message
            )

    run(scenario())
