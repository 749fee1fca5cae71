"""Triton's dynamic batcher merges the gateway's calls; requests over max_batch_size are split."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient import grpc as triton_grpc

from devtools.client import authed_aio_channel, authed_channel
from devtools.launcher import ServerProcess
from devtools.triton.process import TritonProcess
from service.backbones.card import BackboneCard
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors
from tests.integration.scrape import scrape, value
from tests.triton.conftest import start_triton_gateway
from transferd.v1 import embedding_pb2_grpc

# Triton's per-model counters (cumulative since it started), as prometheus_client names them.
COUNTERS = (
    "nv_inference_request_success_total",
    "nv_inference_count_total",
    "nv_inference_exec_count_total",
)


def triton_counters(triton: TritonProcess) -> dict[str, float]:
    """The text backbone's request, inference and execution counters (all versions)."""
    samples = scrape(triton.metrics_url)
    return {name: value(samples, name, model=BACKBONE) for name in COUNTERS}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def pending(triton: TritonProcess) -> float:
    """Requests of the text backbone waiting in Triton's queue (not the one executing)."""
    return value(scrape(triton.metrics_url), "nv_inference_pending_request_count", model=BACKBONE)


@pytest.fixture(scope="module")
def wide_gateway(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path, triton: TritonProcess
) -> Iterator[tuple[ServerProcess, str]]:
    """A gateway that accepts 200 inputs a request (more than Triton's max_batch_size of 64),
    sends up to 64 calls at once, and lets a call wait for Triton as long as a test needs."""
    gateway = start_triton_gateway(
        tmp_path_factory.mktemp("wide-gateway"),
        model_repo,
        triton.grpc_url,
        TRANSFERD_MAX_INPUTS_PER_REQUEST="200",
        TRANSFERD_TRITON_MAX_CALLS_IN_FLIGHT="64",
        TRANSFERD_TRITON_TIMEOUT_S="300",
    )
    try:
        yield gateway, gateway.create_tenant_key("acme")
    finally:
        gateway.stop()


def send_blocker(client: triton_grpc.InferenceServerClient, model_repo: Path) -> queue.Queue:
    """Sends Triton, straight, a call of 8 x 256 tokens: it occupies the model's one instance for
    a while, and has a shape that nothing the gateway sends here can share. Its outcome (None or
    the error) arrives on the returned queue."""
    card = BackboneCard.load(model_repo / BACKBONE)
    ids = np.full((8, 256), 1000, dtype=np.int64)
    tensors = []
    for name in card.input_names:
        tensor = triton_grpc.InferInput(name, list(ids.shape), "INT64")
        tensor.set_data_from_numpy(np.ones_like(ids) if name == "attention_mask" else ids)
        tensors.append(tensor)
    done: queue.Queue = queue.Queue()
    client.async_infer(
        BACKBONE,
        tensors,
        callback=lambda result, error: done.put(error),
        outputs=[triton_grpc.InferRequestedOutput(card.output_name)],
    )
    return done


def test_concurrent_requests_of_similar_length_share_triton_executions(
    wide_gateway, triton: TritonProcess, model_repo: Path
) -> None:
    """32 one-text requests of 65 to 96 tokens: all lengths differ, so unpadded every request
    would execute alone (Triton merges equal shapes only); padded to their bucket, they merge.

    What Triton may merge must not depend on when each request arrives: a long call sent straight
    to Triton holds the model's one instance until all 32 wait in its queue together (its pending
    count says so); only then do they run."""
    gateway, key = wide_gateway
    texts = [" ".join(["word"] * n) for n in range(63, 95)]  # + [CLS] and [SEP]

    async def burst(blocker: queue.Queue) -> list:
        async with authed_aio_channel(gateway.address, key) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            calls = [asyncio.ensure_future(stub.Embed(text_request([t]))) for t in texts]
            deadline = time.monotonic() + 120
            while await asyncio.to_thread(pending, triton) < len(texts):
                assert blocker.empty(), "the long call ended before the 32 queued: lengthen it"
                assert time.monotonic() < deadline, "the 32 requests never queued together"
                await asyncio.sleep(0.02)
            return await asyncio.gather(*calls)

    before = triton_counters(triton)
    with triton_grpc.InferenceServerClient(triton.grpc_url) as client:
        blocker = send_blocker(client, model_repo)
        replies = asyncio.run(burst(blocker))
        assert blocker.get(timeout=300) is None
    moved = delta(before, triton_counters(triton))
    assert all(len(r.embeddings) == 1 for r in replies)
    assert moved["nv_inference_request_success_total"] == len(texts) + 1  # and the long call
    assert moved["nv_inference_count_total"] == len(texts) + 8
    # The 32 ran in a few executions (one of 32, or batches of the preferred sizes), not 32.
    executions = moved["nv_inference_exec_count_total"] - 1
    print(f"32 requests in {executions:.0f} executions")
    assert executions <= 4


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
        assert moved["nv_inference_request_success_total"] >= 4
        assert moved["nv_inference_count_total"] == 200
        pieces = [vectors(stub.Embed(text_request(texts[i : i + 50]))) for i in range(0, 200, 50)]
    assert cosines(whole, np.concatenate(pieces)).min() >= 0.99999
