"""Heads: small models trained per tenant on frozen-backbone embeddings.

Pure Python (numpy, scikit-learn, skl2onnx, onnx, onnxruntime); knows nothing of gRPC, protobuf
or the service. Training: `train_head` -> `TrainedHead` (verified ONNX bytes + what the card
needs) -> `TrainedHead.to_card`. Serving: `LoadedHead.from_bytes(card, onnx_bytes).predict(...)`.
The ONNX I/O contract every head honours is documented in `heads.contract`.
"""

from heads.budget import DEFAULT_COST_CAPS, CostEstimate, check_cost, estimate_cost
from heads.card import FORMAT_VERSION, HeadCard, data_hash, utc_now
from heads.errors import (
    HeadError,
    HeadFormatError,
    HeadVerificationError,
    InvalidInput,
    InvalidParams,
    InvalidTrainingData,
)
from heads.kinds import DEFAULT_KIND, KindInfo, available_kinds, describe_kinds, register_kind
from heads.runtime import LoadedHead, Prediction
from heads.stopping import TrainingStopped
from heads.targets import Task
from heads.training import Progress, TrainedHead, check_request, train_head

__all__ = [
    "DEFAULT_COST_CAPS",
    "DEFAULT_KIND",
    "FORMAT_VERSION",
    "CostEstimate",
    "HeadCard",
    "HeadError",
    "HeadFormatError",
    "HeadVerificationError",
    "InvalidInput",
    "InvalidParams",
    "InvalidTrainingData",
    "KindInfo",
    "LoadedHead",
    "Prediction",
    "Progress",
    "Task",
    "TrainedHead",
    "TrainingStopped",
    "available_kinds",
    "check_cost",
    "check_request",
    "data_hash",
    "describe_kinds",
    "estimate_cost",
    "register_kind",
    "train_head",
    "utc_now",
]
