"""Negative-transfer reports over gRPC with the real backbones: tasks built so that a model trained
from scratch on the raw input beats the frozen features, each reported with a warning in the Job
and the Head; a topic task (in test_heads.py) is not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import train_request, wait_for_job
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

# Long, varied tickets: the code is a few tokens of forty, so a pooled sentence embedding
# carries little of it.
FILLERS = (
    "Hi team, could someone look at error {code} before the weekly review on Thursday? The "
    "dashboard has been red since the morning and the on-call engineer is out.",
    "The customer called twice about error {code}; they want an update soon and asked whether "
    "the contract covers this kind of outage at all.",
    "Escalated error {code} to second-line support after the first fix did not hold overnight, "
    "and the logs from the night shift are attached.",
    "Reminder: error {code} is still waiting for a signature from finance, who said they would "
    "look at it after the quarterly close.",
    "Our records show error {code} was opened last month and never assigned; nobody on the rota "
    "remembers who created the ticket.",
    "Can you confirm whether error {code} includes the shipping costs or only the goods? The "
    "invoice and the order do not agree.",
)


def code_task(pairs: int = 24, repeats: int = 4, seed: int = 3) -> list[tuple[str, str]]:
    """Labels that hinge on an exact code: pairs of error codes that differ only by two swapped
    digits (E3125 / E3152) take opposite labels, in support tickets whose wording is random.
    Sentence embeddings of such pairs are nearly equal; character n-grams tell them apart."""
    rng = np.random.default_rng(seed)
    codes: list[tuple[str, str]] = []
    for _ in range(pairs):
        digits = "".join(rng.choice(list("123456789"), 4, replace=False))
        swapped = digits[:2] + digits[3] + digits[2]
        codes += [(f"E{digits}", "refund"), (f"E{swapped}", "replace")]
    return [
        (FILLERS[rng.integers(len(FILLERS))].format(code=code), label)
        for _ in range(repeats)
        for code, label in codes
    ]


def arrangement_task(count: int = 120, seed: int = 0) -> list[tuple[bytes, str]]:
    """Noise with a red square in one half and a blue square in the other: the label is which
    side the red one is on. Pooled ImageNet features see a red and a blue square in every image,
    hardly where they are; 32x32 pixels see both."""
    rng = np.random.default_rng(seed)
    red, blue = np.array([255, 0, 0], np.uint8), np.array([0, 0, 255], np.uint8)
    examples = []
    for i in range(count):
        pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        red_side = i % 2
        for colour, half in ((red, red_side), (blue, 1 - red_side)):
            top, left = rng.integers(0, 96), rng.integers(0, 40) + half * 56
            pixels[top : top + 16, left : left + 16] = colour
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        examples.append((buffer.getvalue(), "red-right" if red_side else "red-left"))
    return examples


def _train(stub: heads_pb2_grpc.HeadServiceStub, request: heads_pb2.TrainHeadRequest) -> tuple:
    job = stub.TrainHead(request)
    final = wait_for_job(stub, job.job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    return final, stub.GetHead(heads_pb2.GetHeadRequest(head=request.head))


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
    final, head = _train(heads_stub, train_request("error-codes", code_task()))
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
    final, head = _train(heads_stub, request)
    _assert_negative(final, head, "pixels32+ridge")
