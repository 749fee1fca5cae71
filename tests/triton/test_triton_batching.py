"""Triton's dynamic batcher merges the gateway's calls; requests over max_batch_size are split."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devtools.client import authed_aio_channel, authed_channel
from devtools.launcher import ServerProcess
from devtools.triton.process import TritonProcess, model_counters
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors
from tests.triton.conftest import start_triton_gateway
from transferd.v1 import embedding_pb2_grpc


def triton_counters(triton: TritonProcess) -> dict[str, float]:
    """The model's request, inference and execution counters from Triton's metrics endpoint."""
    return model_counters(triton.metrics_url, BACKBONE)


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def test_concurrent_requests_of_similar_length_share_triton_executions(
    server: ServerProcess, tenant_key: str, triton: TritonProcess
) -> None:
    """32 one-text requests of 65 to 96 tokens: all lengths differ, so unpadded every request
    would execute alone (Triton merges equal shapes only); padded to their bucket, they merge."""
    texts = [" ".join(["word"] * n) for n in range(63, 95)]  # + [CLS] and [SEP]

    async def burst() -> list:
        async with authed_aio_channel(server.address, tenant_key) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            return await asyncio.gather(*(stub.Embed(text_request([t])) for t in texts))

    before = triton_counters(triton)
    replies = asyncio.run(burst())
    moved = delta(before, triton_counters(triton))
    assert all(len(r.embeddings) == 1 for r in replies)
    assert moved["nv_inference_request_success"] == len(texts)
    assert moved["nv_inference_count"] == len(texts)
    # Average batch size = inferences / executions: well above 1 when merging works.
    assert moved["nv_inference_count"] / moved["nv_inference_exec_count"] >= 2


@pytest.fixture
def wide_gateway(
    tmp_path: Path, model_repo: Path, triton: TritonProcess
) -> Iterator[tuple[ServerProcess, str]]:
    """A gateway that accepts 200 inputs a request: more than Triton's max_batch_size of 64."""
    gateway = start_triton_gateway(
        tmp_path, model_repo, triton.grpc_url, TRANSFERD_MAX_INPUTS_PER_REQUEST="200"
    )
    try:
        yield gateway, gateway.create_tenant_key("acme")
    finally:
        gateway.stop()


def test_a_request_larger_than_max_batch_size_is_split(
    wide_gateway, triton: TritonProcess, sentences: list[str]
) -> None:
    gateway, key = wide_gateway
    texts = [f"{sentences[i % len(sentences)]} ({i})" for i in range(200)]
    with authed_channel(gateway.address, key) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        before = triton_counters(triton)
        whole = vectors(stub.Embed(text_request(texts)))
        moved = delta(before, triton_counters(triton))
        # Triton refuses a call over max_batch_size outright, so this only passes when split.
        assert moved["nv_inference_request_success"] >= 4
        assert moved["nv_inference_count"] == 200
        pieces = [vectors(stub.Embed(text_request(texts[i : i + 50]))) for i in range(0, 200, 50)]
    assert cosines(whole, np.concatenate(pieces)).min() >= 0.99999
