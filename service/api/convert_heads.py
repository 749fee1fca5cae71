"""Protobuf ⇄ domain conversions for HeadService."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from heads import HeadCard, Prediction, TransferReport
from heads.fusion import SEPARATOR
from service.jobs.model import JobSnapshot, JobState, Target
from service.jobs.validation import ConflictingTargets, MissingTarget
from service.predictor import PredictResult
from service.store.registry import StoredHead
from transferd.v1 import heads_pb2

_STATE_TO_PB = {
    JobState.QUEUED: heads_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: heads_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: heads_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: heads_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: heads_pb2.JOB_STATE_CANCELLED,
}


def timestamp_pb(moment: datetime | str) -> Timestamp:
    """A datetime (or its ISO text, as cards keep it) as a protobuf Timestamp."""
    stamp = Timestamp()
    if isinstance(moment, str):
        stamp.FromJsonString(moment.replace("+00:00", "Z"))
    else:
        stamp.FromDatetime(moment)
    return stamp


def target_from_pb(example: heads_pb2.Example) -> Target | MissingTarget | ConflictingTargets:
    given = [example.label != "", len(example.labels) > 0, example.HasField("value")]
    if sum(given) == 0:
        return MissingTarget()
    if sum(given) > 1:
        return ConflictingTargets()
    if example.label:
        return example.label
    if example.labels:
        return list(example.labels)
    return example.value


def transfer_to_pb(report: TransferReport | None) -> heads_pb2.TransferReport | None:
    """None (the field left unset) when the head was not compared with a baseline."""
    return None if report is None else heads_pb2.TransferReport(**report.model_dump())


def job_to_pb(job: JobSnapshot) -> heads_pb2.Job:
    return heads_pb2.Job(
        job_id=job.job_id, head=job.head, version=job.version, state=_STATE_TO_PB[job.state],
        stage=job.stage, progress=job.progress, error=job.error, metrics=job.metrics,
        backbone=job.backbone, kind=job.kind, num_examples=job.num_examples,
        created_at=timestamp_pb(job.created_at), updated_at=timestamp_pb(job.updated_at),
        transfer=transfer_to_pb(job.transfer),
    )  # fmt: skip


def head_to_pb(card: HeadCard, relative_cost: float = 0.0) -> heads_pb2.Head:
    # The registry lists StoredHeads, which carry the damage mark kept beside the card.
    damage = card.damage if isinstance(card, StoredHead) else None
    return heads_pb2.Head(
        name=card.name, version=card.version, backbone=card.backbone,
        backbone_fingerprint=card.backbone_fingerprint, kind=card.kind, task=str(card.task),
        labels=card.labels, metrics=card.metrics, num_examples=card.num_examples,
        params=card.params, created_at=timestamp_pb(card.created_at),
        damaged=damage is not None, health=damage or "", transfer=transfer_to_pb(card.transfer),
        kind_scores=[heads_pb2.KindScore(**score.model_dump()) for score in card.kind_scores],
        backbone_scores=[
            heads_pb2.BackboneScore(**score.model_dump()) for score in card.backbone_scores
        ],
        confusion_matrix=heads_pb2.ConfusionMatrix(
            counts=[count for row in card.confusion_matrix for count in row]
        ),
        backbones=backbone_names(card),
        fusion=[
            heads_pb2.FusedPart(
                backbone=part.backbone, fingerprint=fingerprint, dim=part.dim, weight=part.weight
            )
            for part, fingerprint in zip(
                card.fusion, card.backbone_fingerprint.split(SEPARATOR), strict=True
            )
        ] if card.fusion else [],
        relative_cost=relative_cost,
    )  # fmt: skip


def backbone_names(card: HeadCard) -> list[str]:
    """The backbones a head takes embeddings of: one, or a fused head's parts."""
    return [part.backbone for part in card.fusion] or [card.backbone]


def prediction_to_pb(prediction: Prediction) -> heads_pb2.Prediction:
    return heads_pb2.Prediction(
        label=prediction.label,
        scores=[
            heads_pb2.LabelScore(label=label, score=score) for label, score in prediction.scores
        ],
        labels=prediction.labels,
        value=prediction.value if prediction.value is not None else 0.0,
    )


def predict_result_to_pb(result: PredictResult) -> heads_pb2.PredictResponse:
    return heads_pb2.PredictResponse(
        head=result.head,
        version=result.version,
        predictions=[prediction_to_pb(p) for p in result.predictions],
    )
