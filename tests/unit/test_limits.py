"""Input validation against the limits: every refusal names the field and index."""

from __future__ import annotations

import numpy as np
import pytest

from service.backbones.inputs import (
    EmbeddingInput,
    ImageInput,
    InputLimits,
    MissingInput,
    TextInput,
    texts_for_backbone,
)
from service.errors import InvalidArgument

LIMITS = InputLimits(max_inputs=4, max_text_bytes=10)


def _field_of(inputs: list) -> str:
    with pytest.raises(InvalidArgument) as caught:
        texts_for_backbone(inputs, "minilm", LIMITS)
    return caught.value.field


def test_good_texts_pass_through_in_order() -> None:
    assert texts_for_backbone([TextInput("a"), TextInput("héllo")], "minilm", LIMITS) == [
        "a",
        "héllo",
    ]


def test_count_limits() -> None:
    assert _field_of([]) == "inputs"
    assert _field_of([TextInput("a")] * 5) == "inputs"
    assert len(texts_for_backbone([TextInput("a")] * 4, "minilm", LIMITS)) == 4


def test_byte_limit_counts_utf8_bytes_not_characters() -> None:
    assert texts_for_backbone([TextInput("é" * 5)], "minilm", LIMITS)  # 10 bytes: at the limit
    assert _field_of([TextInput("ok"), TextInput("é" * 6)]) == "inputs[1].text"  # 12 bytes


def test_each_kind_of_bad_input_is_named_by_index() -> None:
    assert _field_of([TextInput("a"), MissingInput()]) == "inputs[1]"
    assert _field_of([TextInput("a"), TextInput("b"), ImageInput(b"png")]) == "inputs[2].image"
    assert _field_of([EmbeddingInput(np.zeros(3, np.float32))]) == "inputs[0].embedding"
    assert _field_of([TextInput("a"), TextInput(" \n")]) == "inputs[1].text"


def test_field_prefix_is_configurable_for_other_requests() -> None:
    with pytest.raises(InvalidArgument) as caught:
        texts_for_backbone([TextInput("")], "minilm", LIMITS, field="examples")
    assert caught.value.field == "examples[0].text"
    assert str(caught.value).startswith("examples[0].text: ")
