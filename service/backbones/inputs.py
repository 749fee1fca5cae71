"""Domain inputs of Embed/Predict and their validation against a backbone and the limits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.errors import InvalidArgument


@dataclass(frozen=True)
class TextInput:
    text: str


@dataclass(frozen=True)
class ImageInput:
    data: bytes


@dataclass(frozen=True)
class EmbeddingInput:
    values: np.ndarray


@dataclass(frozen=True)
class MissingInput:
    """An Input message with none of its fields set (kept so the error can name its index)."""


Input = TextInput | ImageInput | EmbeddingInput | MissingInput

_FIELD_OF = {TextInput: "text", ImageInput: "image", EmbeddingInput: "embedding"}


@dataclass(frozen=True)
class InputLimits:
    max_inputs: int
    max_text_bytes: int


def check_count(inputs: list[Input], limits: InputLimits, field: str = "inputs") -> None:
    if not inputs:
        raise InvalidArgument(field, "at least one input is required")
    if len(inputs) > limits.max_inputs:
        raise InvalidArgument(
            field, f"{len(inputs)} inputs exceed the limit of {limits.max_inputs} per request"
        )


def check_text(item: Input, backbone: str, max_text_bytes: int, where: str) -> str:
    """The text of one input of a text backbone; `where` names it (e.g. ``examples[3].input``)."""
    if isinstance(item, MissingInput):
        raise InvalidArgument(where, "one of text, image or embedding must be set")
    if not isinstance(item, TextInput):
        kind = _FIELD_OF[type(item)]
        raise InvalidArgument(f"{where}.{kind}", f"backbone '{backbone}' takes text, not {kind}")
    size = len(item.text.encode("utf-8"))
    if size == 0 or not item.text.strip():
        raise InvalidArgument(f"{where}.text", "must not be empty")
    if size > max_text_bytes:
        raise InvalidArgument(f"{where}.text", f"{size} bytes exceed the limit of {max_text_bytes}")
    return item.text


def check_image(item: Input, backbone: str, where: str) -> bytes:
    """The bytes of one input of an image backbone; `where` names it (e.g. ``inputs[3]``).

    Only the kind of input is checked here; the image itself is checked by the backbone's
    ImagePreprocessor (size, format, pixels) before it is decoded.
    """
    if isinstance(item, MissingInput):
        raise InvalidArgument(where, "one of text, image or embedding must be set")
    if not isinstance(item, ImageInput):
        kind = _FIELD_OF[type(item)]
        raise InvalidArgument(f"{where}.{kind}", f"backbone '{backbone}' takes images, not {kind}")
    return item.data
