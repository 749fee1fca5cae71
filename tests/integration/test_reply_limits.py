"""Labels of any size: replies are bounded before they are built, and built off the event loop.

A 3,000-label head asked for every score of 1,024 inputs makes a reply of tens of MB. Over the
response limit it is refused at once, saying which top_k fits; within it, it is built off the
event loop while another tenant's calls go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.client import bearer
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server, text_request
from tests.integration.scrape import server_metrics, value
from transferd.v1 import common_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

LABELS = 3000
INPUTS = 1024


@pytest.fixture(scope="module")
def reply_server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator:
    process = start_server(
        tmp_path_factory.mktemp("replies"),
        model_repo,
        TRANSFERD_MAX_INPUTS_PER_REQUEST="1024",
        TRANSFERD_MAX_EXAMPLES_PER_JOB="5000",
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def many_labels_head(reply_server: ServerProcess) -> tuple[str, str]:
    """Tenant `wide` with a knn head of 3,000 labels of 17 bytes each: (key, head name)."""
    key = reply_server.create_tenant_key("wide")
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=f"item {i}"), label=f"label-number-{i:04d}")
        for i in range(LABELS)
    ]
    request = heads_pb2.TrainHeadRequest(
        head="wide", backbone=BACKBONE, kind="knn", examples=examples, validation_fraction=0
    )
    with grpc.insecure_channel(reply_server.address) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        job = stub.TrainHead(request, metadata=bearer(key), timeout=60)
        final = list(
            stub.WatchJob(
                heads_pb2.WatchJobRequest(job_id=job.job_id), metadata=bearer(key), timeout=300
            )
        )[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    return key, "wide"


def _predict_request(top_k: int) -> heads_pb2.PredictRequest:
    rows = np.random.default_rng(0).normal(size=(INPUTS, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return heads_pb2.PredictRequest(
        head="wide",
        top_k=top_k,
        inputs=[common_pb2.Input(embedding=common_pb2.Embedding(values=row)) for row in rows],
    )


def test_a_reply_over_the_limit_is_refused_before_it_is_built(
    reply_server, many_labels_head
) -> None:
    """Refused from the head's card: the head is not even loaded, so no score is computed."""
    key, _ = many_labels_head
    cached = "transferd_heads_cached"
    assert value(server_metrics(reply_server), cached) == 0, "no Predict ran on this server yet"
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(reply_server.address, options=options) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(_predict_request(0), metadata=bearer(key), timeout=60)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "top_k=" in caught.value.details()
        assert value(server_metrics(reply_server), cached) == 0, (
            "the refused Predict loaded the head: the reply must be sized from the stored card "
            "before HeadRegistry.load (service/predictor.py)"
        )
        # A Predict that fits loads the head: the gauge would have shown the refused one's load.
        small = heads_pb2.PredictRequest(
            head="wide", top_k=1, inputs=_predict_request(1).inputs[:1]
        )
        assert len(stub.Predict(small, metadata=bearer(key), timeout=60).predictions) == 1
        assert value(server_metrics(reply_server), cached) == 1


def _victim_latencies(address: str, key: str, stop: threading.Event, out: list[float]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        while not stop.is_set():
            started = time.perf_counter()
            stub.Embed(text_request(["a quiet request"]), metadata=bearer(key), timeout=60)
            out.append(time.perf_counter() - started)


def test_a_large_legitimate_reply_does_not_stall_other_tenants(
    reply_server, many_labels_head
) -> None:
    key, _ = many_labels_head
    victim = reply_server.create_tenant_key("victim")
    loaded: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(
        target=_victim_latencies, args=(reply_server.address, victim, stop, loaded)
    )
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(reply_server.address, options=options) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        top_k = 1000  # about 30 MB of scores: within the 64 MiB limit
        prober.start()
        try:
            started = time.perf_counter()
            reply = stub.Predict(_predict_request(top_k), metadata=bearer(key), timeout=120)
            took = time.perf_counter() - started
        finally:
            stop.set()
            prober.join(timeout=60)
    assert len(reply.predictions) == INPUTS
    assert all(len(p.scores) == top_k for p in reply.predictions)
    assert loaded, "the victim got no answer while the reply was built"
    # Before: every other client was blocked for the whole build (5 s of the call's 6 s for
    # 46 MB). Now the victim keeps being answered: none of its calls waits for the build.
    print(f"large reply {took:.2f} s; victim: {len(loaded)} calls, slowest {max(loaded):.3f} s")
    assert max(loaded) < took / 2, (max(loaded), took)


def test_an_8_mb_label_is_refused_at_train_time(reply_server, many_labels_head) -> None:
    key, _ = many_labels_head
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text="one"), label="x" * 8_000_000),
        heads_pb2.Example(input=common_pb2.Input(text="two"), label="y"),
    ]
    request = heads_pb2.TrainHeadRequest(head="bomb", backbone=BACKBONE, examples=examples)
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(reply_server.address, options=options) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.TrainHead(request, metadata=bearer(key), timeout=60)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("examples[0].label")
    assert len(caught.value.details()) < 300
