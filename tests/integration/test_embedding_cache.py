"""The embedding cache over gRPC, with the real model: Embed, Predict and TrainHead all skip the
backbone for inputs the tenant sent before, bit for bit, and never for another tenant's."""

from __future__ import annotations

from pathlib import Path

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import (
    labelled,
    start_server,
    text_request,
    topics,
    train_request,
    train_to_success,
)
from tests.integration.scrape import server_metrics, value
from transferd.v1 import common_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc


def _computed(server: ServerProcess) -> float:
    """Inputs the backbone has embedded so far (cache hits are not counted)."""
    return value(server_metrics(server), "transferd_embedded_inputs_total", backbone=BACKBONE)


def _hits(server: ServerProcess) -> float:
    return value(server_metrics(server), "transferd_embedding_cache_hits_total", backbone=BACKBONE)


def test_repeated_inputs_skip_the_backbone_for_their_tenant_only(
    tmp_path: Path, model_repo: Path
) -> None:
    """Embed twice: the second reply is the first's bits, from the cache. Another tenant's first
    Embed of the same texts is computed. TrainHead on texts the tenant embedded, a retrain on the
    same examples, and Predict on them compute nothing more."""
    # Eight examples of each topic: one Embed request (the tests' limit is 64 inputs).
    pairs = labelled({topic: texts[:8] for topic, texts in topics()["train"].items()})
    texts = [text for text, _ in pairs]
    server = start_server(tmp_path, model_repo)
    try:
        acme, globex = server.create_tenant_key("acme"), server.create_tenant_key("globex")
        with authed_channel(server.address, acme) as channel:
            embedding = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            heads = heads_pb2_grpc.HeadServiceStub(channel)
            first = embedding.Embed(text_request(texts))
            computed, hits = _computed(server), _hits(server)
            again = embedding.Embed(text_request(texts))
            assert _computed(server) == computed
            assert _hits(server) == hits + len(texts)
            assert [e.values for e in again.embeddings] == [e.values for e in first.embeddings]

            train_to_success(heads, train_request("topic", pairs))
            train_to_success(heads, train_request("topic", pairs))
            reply = heads.Predict(
                heads_pb2.PredictRequest(
                    head="topic", inputs=[common_pb2.Input(text=t) for t in texts[:8]]
                )
            )
            assert len(reply.predictions) == 8
            assert _computed(server) == computed

        with authed_channel(server.address, globex) as channel:
            other = embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(text_request(texts))
            assert _computed(server) == computed + len(texts)
            assert [e.values for e in other.embeddings] == [e.values for e in first.embeddings]
    finally:
        server.stop()


def test_a_zero_budget_turns_the_cache_off(tmp_path: Path, model_repo: Path) -> None:
    texts = topics()["test"]["sports"][:4]
    server = start_server(tmp_path, model_repo, TRANSFERD_EMBEDDING_CACHE_MB="0")
    try:
        with authed_channel(server.address, server.create_tenant_key("acme")) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            stub.Embed(text_request(texts))
            computed = _computed(server)
            stub.Embed(text_request(texts))
            assert _computed(server) == computed + len(texts)
            assert _hits(server) == 0
    finally:
        server.stop()
