"""What a training job is: its request, its state, and the snapshot clients see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from heads.targets import Target
from heads.transfer import TransferReport
from service.backbones.inputs import Input


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class TrainingRequest:
    """A validated TrainHead request (the tenant comes from the key, not from here)."""

    head: str
    backbone: str
    kind: str  # resolved: never empty
    inputs: list[Input]
    targets: list[Target]
    params: dict[str, str]
    validation_fraction: float
    embedding_dim: int = 0  # the backbone's width (for the compute budget); 0: unknown


@dataclass(frozen=True)
class JobSnapshot:
    """One job as stored and as streamed to watchers."""

    job_id: str
    tenant: str
    head: str
    backbone: str
    kind: str
    num_examples: int
    state: JobState
    stage: str
    progress: float
    created_at: datetime
    updated_at: datetime
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    version: int = 0
    transfer: TransferReport | None = None  # the head against a from-scratch baseline
