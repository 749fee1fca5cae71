"""`kind: "auto"` and `backbone: "auto"` over gRPC with the real backbones: every candidate
scored, one chosen and trained, the scores in GetHead; bad requests refused naming the field."""

from __future__ import annotations

import grpc
import pytest

from devtools.tasks import arrangement_task
from heads.kinds import candidate_kinds as kinds_for
from heads.targets import Task
from tests.integration.conftest import (
    labelled,
    topics,
    train_request,
    train_to_success,
    wait_for_job,
)
from transferd.v1 import common_pb2, heads_pb2


@pytest.mark.slow
def test_kind_auto_records_every_candidate_and_trains_the_chosen_one(heads_stub) -> None:
    request = train_request("auto-kind", labelled(topics()["train"]), kind="auto")
    _, head = train_to_success(heads_stub, request)
    scores = list(head.kind_scores)
    print(", ".join(f"{s.kind} {s.cv_score:.3f}±{s.cv_std:.3f}{'*' * s.chosen}" for s in scores))
    assert [s.kind for s in scores] == [k.name for k in kinds_for(Task.CLASSIFICATION)]
    (chosen,) = [s for s in scores if s.chosen]
    assert head.kind == chosen.kind
    # The best, or an earlier kind within the noise of the folds (the one-standard-error rule).
    best = max(scores, key=lambda s: s.cv_score)
    assert chosen == best or (
        scores.index(chosen) < scores.index(best)
        and chosen.cv_score >= best.cv_score - max(s.cv_std for s in scores)
    )
    assert all(0.0 <= s.cv_score <= 1.0 and s.cv_std >= 0.0 for s in scores)
    # Six separable topics: the chosen kind must be good, not merely the least bad.
    assert chosen.cv_score >= 0.8 and head.metrics["accuracy"] >= 0.7


def test_params_with_kind_auto_are_invalid_argument_naming_params(heads_stub) -> None:
    request = train_request(
        "auto-params", labelled(topics()["train"]), kind="auto", params={"C": "1"}
    )
    with pytest.raises(grpc.RpcError) as refused:
        heads_stub.TrainHead(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("params:")


@pytest.mark.slow
def test_backbone_auto_scores_every_text_backbone_and_serves_the_chosen_one(heads_stub) -> None:
    data = topics()
    request = train_request("auto-backbone", labelled(data["train"]), backbone="auto")
    job = heads_stub.TrainHead(request)
    updates = wait_for_job(heads_stub, job.job_id)
    final = updates[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.backbone == "auto"
    stages = [u.stage for u in updates]
    assert "choosing backbone" in stages
    head = heads_stub.GetHead(heads_pb2.GetHeadRequest(head="auto-backbone"))
    scores = list(head.backbone_scores)
    print(", ".join(f"{s.backbone} {s.cv_score:.3f} LogME {s.transferability:.3f}" for s in scores))
    # Every text backbone, the narrower (cheaper) first, then their fusion; the image backbone
    # is not a candidate.
    assert [s.backbone for s in scores] == [
        "all-minilm-l6-v2", "all-mpnet-base-v2", "all-minilm-l6-v2+all-mpnet-base-v2"
    ]  # fmt: skip
    (chosen,) = [s for s in scores if s.chosen]
    assert head.backbone == chosen.backbone
    assert all(s.transferability != 0.0 for s in scores)
    held_out = labelled(data["test"])
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="auto-backbone", inputs=[common_pb2.Input(text=t) for t, _ in held_out]
        )
    )
    right = [p.label == label for p, (_, label) in zip(reply.predictions, held_out, strict=True)]
    assert sum(right) / len(right) >= 0.7


def test_backbone_auto_refuses_inputs_of_two_modalities_naming_the_first_odd_one(
    heads_stub,
) -> None:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text="a sentence"), label="a"),
        heads_pb2.Example(input=common_pb2.Input(image=b"\x89PNG..."), label="b"),
    ]
    request = heads_pb2.TrainHeadRequest(head="mixed", backbone="auto", examples=examples)
    with pytest.raises(grpc.RpcError) as refused:
        heads_stub.TrainHead(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("examples[1].input:")


@pytest.mark.slow
def test_both_auto_on_values_choose_among_the_regression_kinds(heads_stub) -> None:
    """Regression: the kinds that do values, the same text backbones, R² as the score."""
    topic_value = {"sports": 1.0, "cooking": 2.0, "technology": 3.0, "finance": 4.0}
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=text), value=topic_value[label])
        for text, label in labelled(topics()["train"])
        if label in topic_value
    ]
    request = heads_pb2.TrainHeadRequest(
        head="auto-values", backbone="auto", kind="auto", examples=examples
    )
    _, head = train_to_success(heads_stub, request)
    assert head.task == "regression"
    assert [s.kind for s in head.kind_scores] == [k.name for k in kinds_for(Task.REGRESSION)]
    assert [s.backbone for s in head.backbone_scores] == [
        "all-minilm-l6-v2", "all-mpnet-base-v2", "all-minilm-l6-v2+all-mpnet-base-v2"
    ]  # fmt: skip
    assert head.kind == next(s.kind for s in head.kind_scores if s.chosen)
    assert head.transfer.metric == "r2"


@pytest.mark.slow
def test_backbone_auto_on_images_has_the_image_backbone_as_its_candidate(heads_stub) -> None:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(image=data), label=label)
        for data, label in arrangement_task(count=24)
    ]
    request = heads_pb2.TrainHeadRequest(head="auto-images", backbone="auto", examples=examples)
    _, head = train_to_success(heads_stub, request)
    assert [(s.backbone, s.chosen) for s in head.backbone_scores] == [("efficientnet-lite0", True)]
    assert head.backbone == "efficientnet-lite0"
