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


def texts_for_backbone(
    inputs: list[Input], backbone: str, limits: InputLimits, field: str = "inputs"
) -> list[str]:
    """Checks the count, then that every input is a non-empty text within the byte limit.

    Raises:
        InvalidArgument: naming the first bad input, e.g. ``inputs[2].text``.
    """
    check_count(inputs, limits, field)
    return [
        check_text(item, backbone, limits.max_text_bytes, f"{field}[{index}]")
        for index, item in enumerate(inputs)
    ]


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
