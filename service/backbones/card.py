"""`backbone.json`: the card that describes one exported backbone folder of the model repository.

Both runtimes (embedded and Triton) and the exporter read and write the same card. It is a
frozen pydantic model, validated like the head card (`heads.card`): strict types, no unknown
keys (every card ever written has had exactly these fields, the later ones with defaults), a
supported `format_version`; a bad card raises `BackboneCardError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from heads.card import validation_problems

CARD_FILE = "backbone.json"
MODEL_VERSION = "1"
MODEL_FILE = "model.onnx"
CARD_FORMAT_VERSION = 1
# The export's precision (`export.precision`): cards written before it was recorded are fp32.
FP32 = "fp32"
FP16 = "fp16"
INT8 = "int8"  # a quantized variant: CPU only (runtimes/device.py, export/triton_config.py)
#: Validation context of a card read from disk, to be served: it must have what its modality needs.
_LOADED = {"loaded": True}

NonEmptyStr = Annotated[str, Field(min_length=1)]
Positive = Annotated[int, Field(ge=1)]


class BackboneCardError(ValueError):
    """A `backbone.json` that is not valid JSON or not a valid card."""


class BackboneCard(BaseModel):
    """What the gateway must know about a backbone to feed it and to bind heads to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: NonEmptyStr
    modality: Literal["text", "image"]
    dim: Positive
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # SHA-256 of model_path()
    input_names: Annotated[list[NonEmptyStr], Field(min_length=1)]
    output_name: NonEmptyStr
    pooling: NonEmptyStr  # "mean", "cls", "last", "avg" (images)
    normalized: bool
    source: dict[str, str]
    export: dict[str, Any] = Field(default_factory=dict)
    # Text backbones.
    tokenizer_file: NonEmptyStr | None = None
    max_sequence_length: Positive | None = None
    # Image backbones: the graph takes uint8 NHWC pixels of image_size × image_size and does
    # cast, normalisation and transpose itself; the gateway decodes and resizes by resize_policy.
    image_size: Positive | None = None
    resize_policy: NonEmptyStr | None = None
    format_version: int = CARD_FORMAT_VERSION

    @field_validator("format_version")
    @classmethod
    def _supported(cls, format_version: int) -> int:
        if format_version != CARD_FORMAT_VERSION:
            raise ValueError(f"unsupported backbone card format {format_version!r}")
        return format_version

    @property
    def precision(self) -> str:
        """The export's precision: FP32, FP16 or INT8."""
        return str(self.export.get("precision", FP32))

    @model_validator(mode="after")
    def _servable(self, info: ValidationInfo) -> BackboneCard:
        """A loaded card has what its modality needs to be served (cards built in code, e.g.
        to render a config, may leave it out)."""
        if not (info.context or {}).get("loaded"):
            return self
        needs = (
            ("tokenizer_file", "max_sequence_length")
            if self.modality == "text"
            else ("image_size", "resize_policy")
        )
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.modality} backbone needs {' and '.join(missing)}")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> BackboneCard:
        """Parses and validates a card.

        Raises:
            BackboneCardError: Not JSON, not an object, a missing or unknown key, a wrongly typed
                or out-of-range value, an unsupported format version, or a card that misses what
                its modality needs.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise BackboneCardError(f"invalid backbone card: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise BackboneCardError("invalid backbone card: not a JSON object")
        if data.get("format_version") != CARD_FORMAT_VERSION:  # checked first: it says the rest
            raise BackboneCardError(
                f"unsupported backbone card format {data.get('format_version')!r}"
            )
        try:
            return cls.model_validate(data, context=_LOADED)
        except ValidationError as error:
            raise BackboneCardError(
                f"invalid backbone card: {validation_problems(error)}"
            ) from None

    @classmethod
    def load(cls, folder: Path) -> BackboneCard:
        path = folder / CARD_FILE
        try:
            return cls.from_json(path.read_bytes())
        except BackboneCardError as error:
            raise BackboneCardError(f"{path}: {error}") from None


def model_path(folder: Path) -> Path:
    """Where a backbone folder keeps its ONNX model (Triton's version-folder layout)."""
    return folder / MODEL_VERSION / MODEL_FILE


def sha256_of_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
