"""`backbone.json`: the card that describes one exported backbone folder of the model repository.

Both runtimes (embedded and Triton) and the exporter read and write the same card.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE = "backbone.json"
MODEL_VERSION = "1"
MODEL_FILE = "model.onnx"
CARD_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BackboneCard:
    """What the gateway must know about a backbone to feed it and to bind heads to it."""

    name: str
    modality: str  # "text" or "image"
    dim: int
    fingerprint: str  # SHA-256 of MODEL_VERSION/model.onnx
    input_names: list[str]
    output_name: str
    pooling: str  # "mean", "cls", "last", "avg" (images)
    normalized: bool
    source: dict[str, str]
    export: dict[str, Any] = field(default_factory=dict)
    # Text backbones.
    tokenizer_file: str | None = None
    max_sequence_length: int | None = None
    # Image backbones: the graph takes uint8 NHWC pixels of image_size × image_size and does
    # cast, normalisation and transpose itself; the gateway decodes and resizes by resize_policy.
    image_size: int | None = None
    resize_policy: str | None = None
    format_version: int = CARD_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BackboneCard:
        data = json.loads(text)
        if data.get("format_version") != CARD_FORMAT_VERSION:
            raise ValueError(f"unsupported backbone card format {data.get('format_version')!r}")
        return cls(**data)

    @classmethod
    def load(cls, folder: Path) -> BackboneCard:
        return cls.from_json((folder / CARD_FILE).read_text())


def model_path(folder: Path) -> Path:
    """Where a backbone folder keeps its ONNX model (Triton's version-folder layout)."""
    return folder / MODEL_VERSION / MODEL_FILE


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
