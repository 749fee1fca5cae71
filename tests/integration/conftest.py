"""Integration fixtures: the real `transferd serve` on free loopback ports, the real model.

The servers, the shared Triton and the `runtime` each test runs on are in `servers.py`, registered
here as a plugin (and in tests/triton/conftest.py), so that both folders share them. Mark a test
or module `both_runtimes` to run it against the embedded runtime and against Triton.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BACKBONE, DATA
from tests.integration import servers
from tests.integration.servers import (  # noqa: F401 - helpers, imported from here by the tests
    LIMITS,
    server_process,
    start_server,
)
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2, heads_pb2_grpc


def pytest_configure(config: pytest.Config) -> None:
    servers.register(config)


@pytest.fixture(scope="session")
def minilm_repo(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Path:
    """The MiniLM backbone alone (linked, never written): a server that starts in seconds."""
    repo = tmp_path_factory.mktemp("minilm-repo")
    source = model_repo / BACKBONE
    for path in source.rglob("*"):
        if path.is_file():
            target = repo / BACKBONE / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    return repo


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


def train_to_success(
    stub: heads_pb2_grpc.HeadServiceStub, request: heads_pb2.TrainHeadRequest
) -> tuple[heads_pb2.Job, heads_pb2.Head]:
    """TrainHead, watched until the job ends, which must be SUCCEEDED: its last update and the
    published head (GetHead)."""
    final = wait_for_job(stub, stub.TrainHead(request).job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    return final, stub.GetHead(heads_pb2.GetHeadRequest(head=request.head))
