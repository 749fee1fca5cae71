"""The head card: the JSON that describes a stored head next to its ONNX file.

Loading is strict (missing, extra or wrongly typed keys are refused) because a card that is only
half understood would serve a head under the wrong labels or the wrong backbone.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np

from heads.errors import HeadFormatError
from heads.targets import EncodedTargets, Task, canonical_targets, encode_targets

FORMAT_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


def utc_now() -> str:
    """Returns the current time as the card's ISO-8601 UTC string, e.g. 2025-01-31T12:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def _bad(name: str, why: str) -> HeadFormatError:
    return HeadFormatError(f"invalid head card: {name} {why}")


def _check_str(name: str, value: Any, nonempty: bool = True) -> None:
    if not isinstance(value, str) or (nonempty and not value):
        raise _bad(name, "must be a non-empty string" if nonempty else "must be a string")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, f"must be an integer >= {minimum}")


@dataclass(frozen=True)
class HeadCard:
    """Everything known about one published head version, except its ONNX bytes.

    Attributes:
        tenant: Owner of the head.
        name: Head name, unique per tenant.
        version: Version, from 1 (0 in requests means "latest", never stored).
        kind: Head kind, e.g. ``logistic_regression``.
        task: ``classification``, ``multi_label`` or ``regression``.
        labels: Output labels in the ONNX ``probabilities`` column order; empty for regression.
        metrics: Validation metrics (see `heads.metrics.evaluate`).
        params: Effective hyper-parameters, tuned values included, as strings.
        backbone: Name of the backbone whose embeddings the head takes.
        backbone_fingerprint: That backbone's fingerprint at training time.
        embedding_dim: Width of the head's input.
        num_examples: Number of training examples (training and validation parts).
        data_hash: `data_hash` of the training set.
        created_at: ISO-8601 UTC time of training, see `utc_now`.
        onnx_sha256: SHA-256 (hex) of the head's ONNX bytes.
        format_version: Card format, `FORMAT_VERSION`.
    """

    tenant: str
    name: str
    version: int
    kind: str
    task: Task
    labels: list[str]
    metrics: dict[str, float]
    params: dict[str, str]
    backbone: str
    backbone_fingerprint: str
    embedding_dim: int
    num_examples: int
    data_hash: str
    created_at: str
    onnx_sha256: str
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        for name in ("tenant", "name", "kind", "backbone", "backbone_fingerprint"):
            _check_str(name, getattr(self, name))
        _check_int("version", self.version, 1)
        _check_int("embedding_dim", self.embedding_dim, 1)
        _check_int("num_examples", self.num_examples, 0)
        _check_int("format_version", self.format_version, 1)
        if self.format_version != FORMAT_VERSION:
            raise _bad("format_version", f"{self.format_version} is not supported")
        try:
            task = Task(self.task)
        except ValueError:
            raise _bad("task", f"{self.task!r} is unknown") from None
        if not isinstance(self.labels, list | tuple) or not all(
            isinstance(label, str) and label for label in self.labels
        ):
            raise _bad("labels", "must be a list of non-empty strings")
        if len(set(self.labels)) != len(self.labels):
            raise _bad("labels", "must not repeat")
        if (task is Task.REGRESSION) != (len(self.labels) == 0):
            raise _bad("labels", f"do not fit task {task.value}")
        if not isinstance(self.metrics, dict) or not all(
            isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            for k, v in self.metrics.items()
        ):
            raise _bad("metrics", "must map strings to finite numbers")
        if not isinstance(self.params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.params.items()
        ):
            raise _bad("params", "must map strings to strings")
        for name in ("data_hash", "onnx_sha256"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                raise _bad(name, "must be 64 lower-case hex digits")
        _check_str("created_at", self.created_at)
        try:
            when = datetime.fromisoformat(self.created_at)
        except ValueError:
            raise _bad("created_at", "must be an ISO-8601 time") from None
        if when.utcoffset() is None or when.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
            raise _bad("created_at", "must be in UTC")
        # Normalise, and copy so that the card never aliases the caller's containers.
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "labels", list(self.labels))
        object.__setattr__(self, "metrics", {k: float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "params", dict(self.params))

    def to_dict(self) -> dict[str, Any]:
        """Returns the card as a JSON-able dict (task as its string value)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["task"] = self.task.value
        out["labels"] = list(self.labels)
        out["metrics"] = dict(self.metrics)
        out["params"] = dict(self.params)
        return out

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
        expected = {f.name for f in fields(cls)}
        missing, extra = sorted(expected - data.keys()), sorted(data.keys() - expected)
        if missing or extra:
            raise HeadFormatError(
                f"invalid head card: missing keys {missing}, unknown keys {extra}"
            )
        if not isinstance(data["task"], str):
            raise _bad("task", "must be a string")
        return cls(**data)
