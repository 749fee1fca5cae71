"""Embed and ListBackbones over real gRPC, compared with sentence-transformers on torch.

Every test here runs on both runtimes (`both_runtimes`): ONNX Runtime in the server, and the real
tritonserver behind the gateway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from devtools.client import authed_aio_channel
from devtools.launcher import ServerProcess
from service.backbones.card import model_path, sha256_of_file
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors
from transferd.v1 import embedding_pb2, embedding_pb2_grpc

pytestmark = pytest.mark.both_runtimes


def test_list_backbones_describes_the_exported_model(
    embedding_stub, model_repo: Path, runtime: str
) -> None:
    reply = embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest())
    assert {b.runtime for b in reply.backbones} == {runtime}  # every backbone, text or image
    (backbone,) = [b for b in reply.backbones if b.name == BACKBONE]
    assert backbone.name == BACKBONE
    assert backbone.modality == "text"
    assert backbone.dim == 384
    assert backbone.max_sequence_length == 256
    assert backbone.normalized
    assert backbone.fingerprint == sha256_of_file(model_path(model_repo / BACKBONE))


def test_embeddings_equal_sentence_transformers(embedding_stub, reference_model, sentences) -> None:
    reply = embedding_stub.Embed(text_request(sentences))
    assert reply.backbone == BACKBONE and len(reply.fingerprint) == 64
    got = vectors(reply)
    expected = reference_model.encode(sentences, convert_to_numpy=True)
    assert got.shape == (len(sentences), 384)
    assert cosines(got, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_long_text_is_truncated_like_sentence_transformers(
    embedding_stub, reference_model, sentences
) -> None:
    long_text = " ".join(sentences * 2)  # far beyond 256 tokens, within the 4096-byte limit
    reply = embedding_stub.Embed(text_request([long_text, sentences[0]]))
    assert list(reply.truncated_to) == [256, 0]
    expected = reference_model.encode([long_text, sentences[0]], convert_to_numpy=True)
    assert cosines(vectors(reply), expected).min() >= 0.9999


def test_a_text_embeds_the_same_whatever_it_is_batched_with(embedding_stub, sentences) -> None:
    alone = vectors(embedding_stub.Embed(text_request([sentences[0]])))[0]
    with_long = vectors(embedding_stub.Embed(text_request([sentences[14], sentences[0]])))[1]
    assert float(alone @ with_long) >= 0.99999


def test_concurrent_clients_each_get_their_own_vectors(
    server: ServerProcess, tenant_key: str, reference_model, sentences
) -> None:
    """24 clients at once, each with its own texts and count: every reply matches its own texts."""
    requests = [
        [f"{sentences[(i + j) % len(sentences)]} (client {i}, text {j})" for j in range(1 + i % 7)]
        for i in range(24)
    ]
    expected = [reference_model.encode(texts, convert_to_numpy=True) for texts in requests]

    async def run() -> list[np.ndarray]:
        async with authed_aio_channel(server.address, tenant_key) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            replies = await asyncio.gather(*(stub.Embed(text_request(t)) for t in requests))
        return [vectors(r) for r in replies]

    for got, want in zip(asyncio.run(run()), expected, strict=True):
        assert got.shape == want.shape
        assert cosines(got, want).min() >= 0.9999
