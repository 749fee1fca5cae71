"""Heads: small models trained per tenant on frozen-backbone embeddings.

Pure Python (numpy, scikit-learn, skl2onnx, onnx, onnxruntime, pydantic); knows nothing of gRPC,
protobuf or the service. Training: `train_head` -> `TrainedHead` (verified ONNX bytes + the
`TrainingSummary` part of the card) -> `TrainedHead.to_card`. Serving:
`LoadedHead.from_bytes(card, onnx_bytes).predict(...)`.
The ONNX I/O contract every head honours is documented in `heads.contract`.
"""

from heads.backbone_choice import AUTO_BACKBONE, BackboneScore
from heads.budget import DEFAULT_COST_CAPS, CostEstimate, check_cost, estimate_cost
from heads.card import FORMAT_VERSION, HeadCard, TrainingSummary, data_hash, iso_utc, utc_now
from heads.errors import (
    HeadError,
    HeadFormatError,
    HeadVerificationError,
    InvalidInput,
    InvalidParams,
    InvalidTrainingData,
)
from heads.kind_choice import AUTO_KIND, KindScore
from heads.kinds import DEFAULT_KIND, available_kinds
from heads.runtime import LoadedHead, Prediction
from heads.split import DEFAULT_VALIDATION_FRACTION
from heads.stopping import TrainingStopped
from heads.targets import Task
from heads.training import Progress, TrainedHead, check_request, train_head
from heads.transfer import RawInputs, TransferReport

__all__ = [
    "AUTO_BACKBONE",
    "AUTO_KIND",
    "DEFAULT_COST_CAPS",
    "DEFAULT_KIND",
    "DEFAULT_VALIDATION_FRACTION",
    "FORMAT_VERSION",
    "BackboneScore",
    "CostEstimate",
    "HeadCard",
    "HeadError",
    "HeadFormatError",
    "HeadVerificationError",
    "InvalidInput",
    "InvalidParams",
    "InvalidTrainingData",
    "KindScore",
    "LoadedHead",
    "Prediction",
    "Progress",
    "RawInputs",
    "Task",
    "TrainedHead",
    "TrainingSummary",
    "TrainingStopped",
    "TransferReport",
    "available_kinds",
    "check_cost",
    "check_request",
    "data_hash",
    "estimate_cost",
    "iso_utc",
    "train_head",
    "utc_now",
]
