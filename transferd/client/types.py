"""What the client hands back: plain typed values, not protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from transferd.v1 import heads_pb2, tenants_pb2


class TransferdError(Exception):
    """A call the server refused or could not serve: its gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, error: grpc.RpcError) -> TransferdError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, details or "")


@dataclass(frozen=True)
class Example:
    """One training example: a text, an image (encoded bytes) or an embedding, with a label,
    several labels, or a value."""

    text: str | None = None
    image: bytes | None = None
    embedding: list[float] | None = None
    label: str | None = None
    labels: list[str] | None = None
    value: float | None = None


@dataclass(frozen=True)
class Prediction:
    """One input's prediction: `label` and `scores` (classes), `labels` (multi-label), or
    `value` (regression)."""

    label: str
    scores: dict[str, float]
    labels: list[str]
    value: float

    @classmethod
    def of(cls, message: heads_pb2.Prediction) -> Prediction:
        return cls(
            label=message.label,
            scores={s.label: s.score for s in message.scores},
            labels=list(message.labels),
            value=message.value,
        )


@dataclass(frozen=True)
class JobStatus:
    """A training job as the server last reported it."""

    job_id: str
    head: str
    version: int
    state: str  # QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED
    stage: str
    progress: float
    error: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")

    @classmethod
    def of(cls, message: heads_pb2.Job) -> JobStatus:
        return cls(
            job_id=message.job_id,
            head=message.head,
            version=message.version,
            state=heads_pb2.JobState.Name(message.state).removeprefix("JOB_STATE_"),
            stage=message.stage,
            progress=message.progress,
            error=message.error,
            metrics=dict(message.metrics),
        )


@dataclass(frozen=True)
class HeadInfo:
    """A published head version: what it was trained on and how well it did."""

    name: str
    version: int
    backbone: str
    kind: str
    task: str
    labels: list[str]
    metrics: dict[str, float]
    num_examples: int
    params: dict[str, str] = field(default_factory=dict)
    # The backbones it embeds with: one, or a fused head's parts (`backbone` joins them by "+").
    backbones: list[str] = field(default_factory=list)
    # A fused head's part weights, by part (its `embedding` inputs are the weighted join).
    fusion_weights: dict[str, float] = field(default_factory=dict)
    # What one input costs to embed, relative to the cheapest backbone of its modality (1.0).
    relative_cost: float = 0.0
    # Classification: validation counts, row = true label, column = predicted, in `labels`
    # order; empty for other tasks or without validation examples.
    confusion_matrix: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(cls, message: heads_pb2.Head) -> HeadInfo:
        n = len(message.labels)
        counts = list(message.confusion_matrix.counts)
        return cls(
            name=message.name,
            version=message.version,
            backbone=message.backbone,
            kind=message.kind,
            task=message.task,
            labels=list(message.labels),
            metrics=dict(message.metrics),
            num_examples=message.num_examples,
            params=dict(message.params),
            backbones=list(message.backbones),
            fusion_weights={part.backbone: part.weight for part in message.fusion},
            relative_cost=message.relative_cost,
            confusion_matrix=[counts[row * n : (row + 1) * n] for row in range(n)]
            if n and len(counts) == n * n
            else [],
        )


def moment_of(message: object, field_name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; None when unset."""
    if not message.HasField(field_name):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(message, field_name)
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class ApiKey:
    """A new API key: its secret is shown once, here."""

    tenant: str
    key_id: str
    secret: str
    created_at: datetime | None = None
    expires_at: datetime | None = None  # None: never expires

    @classmethod
    def of(cls, message: tenants_pb2.ApiKey) -> ApiKey:
        return cls(
            tenant=message.tenant, key_id=message.key_id, secret=message.secret,
            created_at=moment_of(message, "created_at"), expires_at=moment_of(message, "expires_at"),
        )  # fmt: skip


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret."""

    key_id: str
    tenant: str
    created_at: datetime | None
    expires_at: datetime | None  # None: never expires
    last_used_at: datetime | None  # to the minute; None: never used
    revoked_at: datetime | None
    expired: bool

    @classmethod
    def of(cls, message: tenants_pb2.ApiKeyInfo) -> KeyInfo:
        return cls(
            key_id=message.key_id, tenant=message.tenant,
            created_at=moment_of(message, "created_at"), expires_at=moment_of(message, "expires_at"),
            last_used_at=moment_of(message, "last_used_at"),
            revoked_at=moment_of(message, "revoked_at"), expired=message.expired,
        )  # fmt: skip


@dataclass(frozen=True)
class TenantInfo:
    name: str
    created_at: datetime | None


@dataclass(frozen=True)
class TenantDeletion:
    """What deleting a tenant removed."""

    keys_revoked: int
    jobs_stopped: int
    head_versions_deleted: int
