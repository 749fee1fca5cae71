"""Every TrainHead and Predict refusal: its status code and the field (and index) it names."""

from __future__ import annotations

import grpc
import pytest

from tests.integration.conftest import labelled, topics, train_request, wait_for_job
from transferd.v1 import common_pb2, heads_pb2

BACKBONE = "all-minilm-l6-v2"
TWO_TOPICS = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})


def text(value: str) -> common_pb2.Input:
    return common_pb2.Input(text=value)


def example(**fields: object) -> heads_pb2.Example:
    return heads_pb2.Example(**fields)


GOOD = [example(input=text(t), label=label) for t, label in TWO_TOPICS]

BAD_TRAINING = {
    "no examples": (heads_pb2.TrainHeadRequest(head="h", backbone=BACKBONE), "examples:"),
    "one class": (train_request("h", [(t, "sports") for t, _ in TWO_TOPICS]), "examples"),
    "mixed targets": (
        heads_pb2.TrainHeadRequest(
            head="h", backbone=BACKBONE, examples=[*GOOD[:3], example(input=text("x y"), value=1.0)]
        ),
        "examples[3]",
    ),
    "no target": (
        heads_pb2.TrainHeadRequest(
            head="h", backbone=BACKBONE, examples=[*GOOD[:2], example(input=text("x y"))]
        ),
        "examples[2]: one of label, labels or value is required",
    ),
    "two targets": (
        heads_pb2.TrainHeadRequest(
            head="h",
            backbone=BACKBONE,
            examples=[*GOOD[:4], example(input=text("a b"), label="x", value=2.0)],
        ),
        "examples[4]: set only one",
    ),
    "unknown backbone": (
        train_request("h", TWO_TOPICS, backbone="resnet-9000"),
        "backbone: unknown backbone",
    ),
    "unknown kind": (train_request("h", TWO_TOPICS, kind="random_forest"), "kind:"),
    "kind cannot do the task": (train_request("h", TWO_TOPICS, kind="ridge"), "kind:"),
    "image input to a text backbone": (
        heads_pb2.TrainHeadRequest(
            head="h",
            backbone=BACKBONE,
            examples=[*GOOD[:5], example(input=common_pb2.Input(image=b"\x89PNG"), label="x")],
        ),
        "examples[5].input.image",
    ),
    "empty text": (
        heads_pb2.TrainHeadRequest(
            head="h", backbone=BACKBONE, examples=[*GOOD[:1], example(input=text(""), label="x")]
        ),
        "examples[1].input.text",
    ),
    "over the example limit": (
        train_request("h", TWO_TOPICS * 13),
        "examples: more than 300 given; at most 300 per request",
    ),
    "unknown param": (train_request("h", TWO_TOPICS, params={"gamma": "1"}), "params[gamma]"),
    "malformed param": (train_request("h", TWO_TOPICS, params={"C": "lots"}), "params[C]"),
    "out of range param": (train_request("h", TWO_TOPICS, params={"C": "-1"}), "params[C]"),
    "validation fraction": (
        train_request("h", TWO_TOPICS, validation_fraction=0.95),
        "validation_fraction",
    ),
    "bad head name": (train_request("../../etc", TWO_TOPICS), "head:"),
    "empty label": (
        heads_pb2.TrainHeadRequest(
            head="h",
            backbone=BACKBONE,
            examples=[*GOOD[:2], example(input=text("x y"), labels=["a", ""])],
        ),
        "examples[2]",
    ),
}


@pytest.mark.parametrize("case", BAD_TRAINING)
def test_bad_training_requests_are_refused_before_any_job(heads_stub, case: str) -> None:
    request, expected = BAD_TRAINING[case]
    with pytest.raises(grpc.RpcError) as caught:
        heads_stub.TrainHead(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert expected in caught.value.details()


@pytest.fixture(scope="module")
def small_head(heads_stub) -> str:
    job = heads_stub.TrainHead(train_request("small", TWO_TOPICS))
    assert wait_for_job(heads_stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
    return "small"


def test_bad_predict_requests(heads_stub, small_head: str) -> None:
    cases = {
        "no inputs": (heads_pb2.PredictRequest(head=small_head), grpc.StatusCode.INVALID_ARGUMENT, "inputs:"),
        "unknown head": (
            heads_pb2.PredictRequest(head="nope", inputs=[text("a")]), grpc.StatusCode.NOT_FOUND, "head 'nope'",
        ),
        "unknown version": (
            heads_pb2.PredictRequest(head=small_head, version=7, inputs=[text("a")]),
            grpc.StatusCode.NOT_FOUND, "version 7",
        ),
        "wrong embedding size": (
            heads_pb2.PredictRequest(
                head=small_head, inputs=[text("a"), common_pb2.Input(embedding=common_pb2.Embedding(values=[0.1] * 3))]
            ),
            grpc.StatusCode.INVALID_ARGUMENT, "inputs[1].embedding",
        ),
        "image": (
            heads_pb2.PredictRequest(head=small_head, inputs=[common_pb2.Input(image=b"x")]),
            grpc.StatusCode.INVALID_ARGUMENT, "inputs[0].image",
        ),
        "empty input": (
            heads_pb2.PredictRequest(head=small_head, inputs=[text("a"), common_pb2.Input()]),
            grpc.StatusCode.INVALID_ARGUMENT, "inputs[1]",
        ),
        "too many": (
            heads_pb2.PredictRequest(head=small_head, inputs=[text("a")] * 65),
            grpc.StatusCode.INVALID_ARGUMENT, "inputs: more than 64 given",
        ),
    }  # fmt: skip
    for name, (request, code, detail) in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            heads_stub.Predict(request)
        assert caught.value.code() == code, name
        assert detail in caught.value.details(), name


def test_unknown_jobs_are_not_found(heads_stub) -> None:
    for call in (
        lambda: heads_stub.GetJob(heads_pb2.GetJobRequest(job_id="0" * 32)),
        lambda: heads_stub.CancelJob(heads_pb2.CancelJobRequest(job_id="")),
        lambda: list(heads_stub.WatchJob(heads_pb2.WatchJobRequest(job_id="nope"))),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
