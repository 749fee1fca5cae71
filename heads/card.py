"""The head card: the JSON that describes a stored head next to its ONNX file.

Loading is strict (missing, extra or wrongly typed keys are refused) because a card that is only
half understood would serve a head under the wrong labels or the wrong backbone. The card is a
frozen pydantic model: types and ranges are declared on its fields, and a bad card raises
`HeadFormatError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from heads.backbone_choice import BackboneScore
from heads.errors import HeadFormatError
from heads.fusion import SEPARATOR, FusedPart
from heads.kind_choice import KindScore
from heads.targets import EncodedTargets, Task, canonical_targets, encode_targets
from heads.transfer import TransferReport

FORMAT_VERSION = 1

NonEmptyStr = Annotated[str, Field(min_length=1)]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC: the one clock of `heads` and of the service."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """A time as cards write it: ISO-8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def validation_problems(error: ValidationError) -> str:
    """Each problem of a pydantic validation error as ``field: message``, joined by "; "."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'card'}: {problem['msg']}"
        for problem in error.errors(include_url=False)
    )


def data_hash(embeddings: np.ndarray, targets: Sequence[object] | EncodedTargets) -> str:
    """SHA-256 identifying a training set, for provenance and de-duplication.

    Canonical form hashed, in order: the line ``transferd-heads/data/v1``; a compact JSON header
    ``{"dim":d,"n":n,"task":task}`` and a newline; the embeddings as little-endian float32 in row
    order; a newline; the compact UTF-8 JSON list of targets (labels; sorted, de-duplicated label
    lists; float values). Example order matters: it is the caller's order.

    Args:
        embeddings: (n, d) embeddings, converted to float32.
        targets: The n raw targets, or already encoded ones.

    Returns:
        64 lower-case hex digits.
    """
    encoded = targets if isinstance(targets, EncodedTargets) else encode_targets(targets)
    x = np.ascontiguousarray(embeddings, dtype="<f4")
    header = {"dim": int(x.shape[1]), "n": int(x.shape[0]), "task": encoded.task.value}
    digest = hashlib.sha256(b"transferd-heads/data/v1\n")
    digest.update(_compact(header).encode() + b"\n")
    digest.update(x.tobytes())
    digest.update(b"\n" + _compact(canonical_targets(encoded)).encode())
    return digest.hexdigest()


def _compact(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


class TrainingSummary(BaseModel):
    """What training decides about a head: the part of its card that `train_head` fills in.

    Validated like the card (see `HeadCard`); `HeadCard` adds who owns the head, its version, its
    backbone and when it was made.

    Attributes:
        kind: Head kind, e.g. ``logistic_regression``.
        task: ``classification``, ``multi_label`` or ``regression``.
        labels: Output labels in the ONNX ``probabilities`` column order; empty for regression.
        metrics: Validation metrics (see `heads.metrics.evaluate`).
        params: Effective hyper-parameters, tuned values included, as strings.
        embedding_dim: Width of the head's input.
        num_examples: Number of training examples (training and validation parts).
        data_hash: `data_hash` of the training set.
        onnx_sha256: SHA-256 (hex) of the head's ONNX bytes.
        transfer: The head against a model trained from scratch on the raw input (see
            `heads.transfer`); None when it was not measured (no raw input, too few
            validation examples, or a card from before the check).
        kind_scores: With kind "auto": every candidate kind's cross-validated score on the
            training part, the chosen one marked (`heads.kind_choice`); else empty.
        backbone_scores: With backbone "auto": every candidate backbone's probe score and
            LogME, the chosen one marked (`heads.backbone_choice`); else empty.
        fusion: A fused head's parts, in the order their embeddings are joined, with their
            widths and weights (`heads.fusion`); empty for a head on one backbone.
        confusion_matrix: Classification: the validation part's counts, true labels as rows and
            predicted ones as columns, both in `labels` order (`heads.metrics`); else empty.
    """

    # strict: no coercion ("3" is not a version, true is not a count) except where a field
    # says otherwise; a validated model copies the caller's containers, so it never aliases them.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: NonEmptyStr
    task: Annotated[Task, Field(strict=False)]  # the string value is the task
    labels: Annotated[list[NonEmptyStr], Field(strict=False)]  # a tuple is a list
    metrics: dict[str, FiniteFloat]
    params: dict[str, str]
    embedding_dim: Annotated[int, Field(ge=1)]
    num_examples: Annotated[int, Field(ge=0)]
    data_hash: Hex64
    onnx_sha256: Hex64
    transfer: TransferReport | None = None
    kind_scores: list[KindScore] = Field(default_factory=list)
    backbone_scores: list[BackboneScore] = Field(default_factory=list)
    confusion_matrix: list[list[Annotated[int, Field(ge=0)]]] = Field(default_factory=list)
    fusion: list[FusedPart] = Field(default_factory=list)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise HeadFormatError(f"invalid head card: {validation_problems(error)}") from None

    @field_validator("labels")
    @classmethod
    def _labels_fit_the_task(cls, labels: list[str], info: ValidationInfo) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("must not repeat")
        task = info.data.get("task")  # absent when the task itself was refused
        if task is not None and (task is Task.REGRESSION) != (len(labels) == 0):
            raise ValueError(f"do not fit task {task.value}")
        return labels

    @field_validator("confusion_matrix")
    @classmethod
    def _square_over_labels(cls, matrix: list[list[int]], info: ValidationInfo) -> list[list[int]]:
        labels = info.data.get("labels")  # absent when the labels themselves were refused
        if matrix and labels is not None:
            if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
                raise ValueError(
                    f"must be {len(labels)} by {len(labels)}, a row and column per label"
                )
        return matrix

    @field_validator("fusion")
    @classmethod
    def _parts_fill_the_input(cls, parts: list[FusedPart], info: ValidationInfo) -> list[FusedPart]:
        dim = info.data.get("embedding_dim")
        if parts and len(parts) < 2:
            raise ValueError("a fused head joins two parts or more")
        if parts and dim is not None and sum(part.dim for part in parts) != dim:
            raise ValueError(f"the parts' widths must add up to embedding_dim {dim}")
        return parts


class HeadCard(TrainingSummary):
    """Everything known about one published head version, except its ONNX bytes.

    Attributes (besides those of `TrainingSummary`):
        tenant: Owner of the head.
        name: Head name, unique per tenant.
        version: Version, from 1 (0 in requests means "latest", never stored).
        backbone: Name of the backbone whose embeddings the head takes (a fused head: its parts'
            names joined by "+", in `fusion` order).
        backbone_fingerprint: That backbone's fingerprint at training time (a fused head: its
            parts' fingerprints, joined likewise).
        created_at: ISO-8601 UTC time of training, see `iso_utc`.
        format_version: Card format, `FORMAT_VERSION`.
    """

    tenant: NonEmptyStr
    name: NonEmptyStr
    version: Annotated[int, Field(ge=1)]
    backbone: NonEmptyStr
    backbone_fingerprint: NonEmptyStr
    created_at: NonEmptyStr
    format_version: Annotated[int, Field(ge=1)] = FORMAT_VERSION

    # A string checked by hand, not pydantic's AwareDatetime: the card keeps, and writes back, the
    # exact text it was given (an AwareDatetime would re-render it).
    @field_validator("created_at")
    @classmethod
    def _iso_utc(cls, created_at: str) -> str:
        try:
            when = datetime.fromisoformat(created_at)
        except ValueError:
            raise ValueError("must be an ISO-8601 time") from None
        offset = when.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError("must be in UTC")
        return created_at

    @field_validator("backbone_fingerprint")
    @classmethod
    def _one_per_part(cls, fingerprint: str, info: ValidationInfo) -> str:
        """A fused head's backbone is its parts' names joined, and its fingerprint theirs."""
        parts = info.data.get("fusion") or []
        backbone = info.data.get("backbone")
        if parts and backbone is not None:
            if backbone != SEPARATOR.join(part.backbone for part in parts):
                raise ValueError("the backbone must join the fusion parts' names")
            if len(fingerprint.split(SEPARATOR)) != len(parts):
                raise ValueError("must join one fingerprint per fusion part")
        return fingerprint

    @field_validator("format_version")
    @classmethod
    def _supported(cls, format_version: int) -> int:
        if format_version != FORMAT_VERSION:
            raise ValueError(f"{format_version} is not supported")
        return format_version

    def to_dict(self) -> dict[str, Any]:
        """Returns the card as a JSON-able dict (task as its string value): the card's fields
        only, also for a subclass that carries more beside them. A card without a transfer
        report or choice scores leaves those keys out, so that it stays readable by releases
        before them."""
        data = self.model_dump(mode="json", include=set(HeadCard.model_fields))
        # Written only when there is something to say.
        for key in ("transfer", "kind_scores", "backbone_scores", "confusion_matrix", "fusion"):
            if not data[key]:
                del data[key]
        return data

    def to_json(self) -> str:
        """Serialises the card as JSON (keys sorted, UTF-8 text, no NaN)."""
        return json.dumps(
            self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> HeadCard:
        """Parses and validates a card.

        Raises:
            HeadFormatError: Not JSON, not an object, a missing or unknown key, a wrongly typed
                or out-of-range value, or an unsupported format version.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HeadFormatError(f"invalid head card: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise HeadFormatError("invalid head card: not a JSON object")
        if "format_version" not in data:  # defaulted for a new card, never for a stored one
            raise HeadFormatError("invalid head card: format_version: Field required")
        return cls(**data)
