"""The Predict reply bound holds for real serialized replies, and is tight enough to be useful."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.errors import ResourceExhausted
from service.reply_size import check_predict_reply, predict_reply_bound
from transferd.v1 import heads_pb2


def _card(labels: list[str], task: str = "classification") -> SimpleNamespace:
    return SimpleNamespace(labels=labels, task=task)


def _reply(labels: list[str], inputs: int, top_k: int, multi: bool) -> heads_pb2.PredictResponse:
    scores = labels[:top_k] if top_k else labels
    prediction = heads_pb2.Prediction(
        label=max(labels, key=len),
        scores=[heads_pb2.LabelScore(label=label, score=0.123456789) for label in scores],
        labels=labels if multi else [],
        value=1.5,
    )
    return heads_pb2.PredictResponse(
        head="h" * 64, version=2**31, predictions=[prediction] * inputs
    )


@pytest.mark.parametrize(
    ("labels", "top_k", "task"),
    [
        ([f"l{i:04d}" for i in range(3000)], 0, "classification"),
        ([f"l{i:04d}" for i in range(3000)], 5, "classification"),
        (["é" * 200, "b", "c" * 70], 0, "multi_label"),
        (["a" * 20_000, "b"], 1, "classification"),
    ],
)
def test_the_bound_is_above_the_real_size_and_close_to_it(labels, top_k, task) -> None:
    real = _reply(labels, 7, top_k, task == "multi_label").ByteSize()
    bound = predict_reply_bound(_card(labels, task), 7, top_k)
    assert real <= bound <= real * 1.1 + 200


def test_a_reply_over_the_limit_is_refused_with_a_top_k_that_fits() -> None:
    card = _card([f"label-{i:05d}" for i in range(3000)])
    limit = 8 * 1024 * 1024
    with pytest.raises(ResourceExhausted) as caught:
        check_predict_reply(card, 1024, 0, limit)
    fitting = int(caught.value.message.split("top_k=")[1].split()[0])
    assert 0 < fitting < 3000
    check_predict_reply(card, 1024, fitting, limit)  # the suggestion fits
    with pytest.raises(ResourceExhausted):
        check_predict_reply(card, 1024, fitting + 1, limit)
