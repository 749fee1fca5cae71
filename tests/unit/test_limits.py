"""Input validation against the limits: every refusal names the field and index."""

from __future__ import annotations

import numpy as np
import pytest

from service.backbones.inputs import (
    EmbeddingInput,
    ImageInput,
    Input,
    InputLimits,
    MissingInput,
    TextInput,
    check_count,
    check_image,
    check_text,
)
from service.errors import InvalidArgument

LIMITS = InputLimits(max_inputs=4, max_text_bytes=10)


def _texts(inputs: list[Input]) -> list[str]:
    check_count(inputs, LIMITS)
    return [
        check_text(item, "minilm", LIMITS.max_text_bytes, f"inputs[{i}]")
        for i, item in enumerate(inputs)
    ]


def _field_of(inputs: list[Input]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        _texts(inputs)
    return caught.value.field


def test_good_texts_pass_through_in_order() -> None:
    assert _texts([TextInput("a"), TextInput("héllo")]) == ["a", "héllo"]


def test_count_limits() -> None:
    assert _field_of([]) == "inputs"
    assert _field_of([TextInput("a")] * 5) == "inputs"
    assert len(_texts([TextInput("a")] * 4)) == 4


def test_byte_limit_counts_utf8_bytes_not_characters() -> None:
    assert _texts([TextInput("é" * 5)])  # 10 bytes: at the limit
    assert _field_of([TextInput("ok"), TextInput("é" * 6)]) == "inputs[1].text"  # 12 bytes


def test_each_kind_of_bad_input_is_named_by_index() -> None:
    assert _field_of([TextInput("a"), MissingInput()]) == "inputs[1]"
    assert _field_of([TextInput("a"), TextInput("b"), ImageInput(b"png")]) == "inputs[2].image"
    assert _field_of([EmbeddingInput(np.zeros(3, np.float32))]) == "inputs[0].embedding"
    assert _field_of([TextInput("a"), TextInput(" \n")]) == "inputs[1].text"


def test_where_names_inputs_of_other_requests() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_text(TextInput(""), "minilm", 10, "examples[0].input")
    assert caught.value.field == "examples[0].input.text"
    assert str(caught.value).startswith("examples[0].input.text: ")


def test_image_backbones_take_images_only() -> None:
    assert check_image(ImageInput(b"\x89PNG"), "effnet", "inputs[0]") == b"\x89PNG"
    for item, field in [
        (TextInput("a cat"), "inputs[2].text"),
        (EmbeddingInput(np.zeros(3, np.float32)), "inputs[2].embedding"),
        (MissingInput(), "inputs[2]"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            check_image(item, "effnet", "inputs[2]")
        assert caught.value.field == field
