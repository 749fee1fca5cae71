"""Negative-transfer reports over gRPC with the real backbones: tasks built so that a model trained
from scratch on the raw input beats the frozen features, each reported with a warning in the Job
and the Head; a topic task (in test_heads.py) is not."""

from __future__ import annotations

import pytest

from devtools.tasks import arrangement_task, code_task
from tests.integration.conftest import train_request, train_to_success
from transferd.v1 import common_pb2, heads_pb2


def _assert_negative(final: heads_pb2.Job, head: heads_pb2.Head, baseline: str) -> None:
    report = head.transfer
    print(f"{head.name}: head {report.head_score:.3f}, {baseline} {report.baseline_score:.3f}")
    assert report.baseline == baseline and report.metric == "accuracy"
    assert report.negative_transfer, report
    assert report.baseline_score >= report.head_score + 0.1, report
    assert report.head_score == pytest.approx(head.metrics["accuracy"], abs=1e-6)
    assert "negative transfer" in report.warning and "another backbone" in report.warning
    # The job that published it says the same; the job still succeeded.
    assert final.transfer == report


@pytest.mark.slow
def test_a_code_task_is_reported_as_negative_transfer(heads_stub) -> None:
    final, head = train_to_success(heads_stub, train_request("error-codes", code_task()))
    _assert_negative(final, head, "tfidf_word_char+ridge")


@pytest.mark.slow
def test_an_image_arrangement_task_is_reported_as_negative_transfer(heads_stub) -> None:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(image=data), label=label)
        for data, label in arrangement_task()
    ]
    request = heads_pb2.TrainHeadRequest(
        head="red-side", backbone="efficientnet-lite0", examples=examples
    )
    final, head = train_to_success(heads_stub, request)
    _assert_negative(final, head, "pixels32+ridge")
