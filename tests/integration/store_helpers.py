"""Helpers of the store tests: small heads trained on embeddings, metrics, the data folder."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import wait_for_job
from tests.integration.scrape import series, server_metrics, value
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

DIM = 384


def rows(n: int, seed: int = 0) -> np.ndarray:
    """`n` unit vectors in two clusters (even rows near +e0, odd rows near -e0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, DIM)).astype(np.float32)
    x[:, 0] += np.where(np.arange(n) % 2 == 0, 3.0, -3.0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embedding_input(row: np.ndarray) -> common_pb2.Input:
    return common_pb2.Input(embedding=common_pb2.Embedding(values=row.tolist()))


def train_request(
    head: str, n: int = 12, kind: str = "", seed: int = 0
) -> heads_pb2.TrainHeadRequest:
    """A request of `n` short texts in two classes (the backbone takes text, not embeddings)."""
    examples = [
        heads_pb2.Example(
            input=common_pb2.Input(text=f"item {seed} {i}"), label="even" if i % 2 == 0 else "odd"
        )
        for i in range(n)
    ]
    return heads_pb2.TrainHeadRequest(
        head=head, backbone=BACKBONE, kind=kind, examples=examples, validation_fraction=0
    )


def train(stub: heads_pb2_grpc.HeadServiceStub, head: str, **kwargs: object) -> heads_pb2.Job:
    """Trains and waits; the final Job."""
    job = stub.TrainHead(train_request(head, **kwargs), timeout=60)  # type: ignore[arg-type]
    return wait_for_job(stub, job.job_id, timeout=300)[-1]


def predict_request(head: str, n: int = 8) -> heads_pb2.PredictRequest:
    return heads_pb2.PredictRequest(head=head, inputs=[embedding_input(r) for r in rows(n, 99)])


def answers(reply: heads_pb2.PredictResponse) -> list[tuple[str, list[tuple[str, float]]]]:
    return [(p.label, [(s.label, s.score) for s in p.scores]) for p in reply.predictions]


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    """The status and message of a finished call or future (OK and "" for success)."""
    try:
        call.result()  # type: ignore[attr-defined]
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def data_dir(server: ServerProcess) -> Path:
    return Path(server.env["TRANSFERD_DATA_DIR"])


def version_folders(data: Path) -> dict[str, bytes]:
    """Every live head version folder, as tenant/name/version -> its ONNX bytes."""
    found = {}
    for onnx in sorted((data / "heads").glob("[!.]*/*/*/head.onnx")):
        found["/".join(onnx.parent.parts[-3:])] = onnx.read_bytes()
    return found


def metric(server: ServerProcess, name: str) -> float:
    """One unlabelled sample from the metrics port."""
    samples = server_metrics(server)
    assert series(samples, name) == [{}], f"{name} is not one unlabelled series"
    return value(samples, name)
