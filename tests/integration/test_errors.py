"""Bad input is refused with INVALID_ARGUMENT naming the field and index; the server stays up.

The tests of the shared server run on both runtimes (`both_runtimes`).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from devtools.client import authed_aio_channel
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server, text_request, vectors
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

pytestmark = pytest.mark.both_runtimes

OK = common_pb2.Input(text="a fine sentence")


def request(*inputs: common_pb2.Input, backbone: str = BACKBONE) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(backbone=backbone, inputs=list(inputs))


BAD_REQUESTS = {
    "no inputs": (request(), "inputs:"),
    "unknown backbone": (
        request(OK, backbone="bert-huge"),
        "backbone: unknown backbone 'bert-huge'",
    ),
    "no backbone": (request(OK, backbone=""), "backbone:"),
    "image to a text backbone": (
        request(OK, common_pb2.Input(image=b"\x89PNG")),
        "inputs[1].image",
    ),
    "embedding to Embed": (
        request(OK, OK, common_pb2.Input(embedding=common_pb2.Embedding(values=[0.1]))),
        "inputs[2].embedding",
    ),
    "input with nothing set": (request(OK, common_pb2.Input()), "inputs[1]:"),
    "empty text": (request(OK, common_pb2.Input(text="  ")), "inputs[1].text: must not be empty"),
    "too many inputs": (request(*[OK] * 65), "inputs: more than 64 given; at most 64 per request"),
    "text over the byte limit": (
        request(OK, OK, OK, common_pb2.Input(text="é" * 2049)),  # 4098 bytes, 2049 characters
        "inputs[3].text: 4098 bytes exceed the limit of 4096",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_is_invalid_argument_naming_the_field(embedding_stub, case: str) -> None:
    bad, expected_detail = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as caught:
        embedding_stub.Embed(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected_detail in caught.value.details()
    # The server is still up and serves a good request right after.
    assert len(embedding_stub.Embed(request(OK)).embeddings) == 1


def test_bad_requests_do_not_disturb_concurrent_good_ones(
    server: ServerProcess, tenant_key: str, sentences
) -> None:
    async def run() -> tuple[list, list]:
        async with authed_aio_channel(server.address, tenant_key) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            good = [stub.Embed(text_request(sentences[i : i + 3])) for i in range(8)]
            bad = [stub.Embed(case[0]) for case in BAD_REQUESTS.values()]
            results = await asyncio.gather(*good, *bad, return_exceptions=True)
        return results[: len(good)], results[len(good) :]

    good, bad = asyncio.run(run())
    assert all(vectors(reply).shape == (3, 384) for reply in good)
    assert all(e.code() == grpc.StatusCode.INVALID_ARGUMENT for e in bad)


def test_overload_is_resource_exhausted_not_an_unbounded_queue(
    tmp_path, model_repo, sentences
) -> None:
    """With room for 16 waiting inputs, a burst of 40 requests of 8 new texts each is partly
    refused (new: texts the tenant sent before come from the embedding cache, at no cost)."""
    process = start_server(tmp_path, model_repo, TRANSFERD_MAX_QUEUED_INPUTS="16")
    try:
        key = process.create_tenant_key("acme")

        async def burst() -> list:
            async with authed_aio_channel(process.address, key) as channel:
                stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
                calls = [
                    stub.Embed(text_request([f"{text} ({i})" for text in sentences[:8]]))
                    for i in range(40)
                ]
                return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(burst())
        refused = [r for r in results if isinstance(r, grpc.RpcError)]
        served = [r for r in results if not isinstance(r, grpc.RpcError)]
        assert refused and served
        assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all(len(r.embeddings) == 8 for r in served)
    finally:
        process.stop()
