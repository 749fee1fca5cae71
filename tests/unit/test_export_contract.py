"""The exporter's Triton config and graph inputs come from the serving modalities' definitions."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from service.backbones.card import BackboneCard
from service.backbones.modalities.tensors import TEXT_TENSORS, image_tensors
from service.export.contract import (
    IMAGE_INPUT_NAME,
    OUTPUT_NAME,
    TEXT_INPUT_NAMES,
    dynamic_axes,
    input_tensors,
)
from service.export.triton_config import render_config

TRITON_DTYPES = {np.dtype(np.int64): "TYPE_INT64", np.dtype(np.uint8): "TYPE_UINT8"}


def _card(modality: str, input_names: list[str], image_size: int | None = None) -> BackboneCard:
    return BackboneCard(
        name="b", modality=modality, dim=8, fingerprint="0" * 64, input_names=input_names,
        output_name=OUTPUT_NAME, pooling="mean", normalized=True, source={},
        image_size=image_size,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("card", "tensors"),
    [
        (_card("text", TEXT_INPUT_NAMES), TEXT_TENSORS),
        (_card("image", [IMAGE_INPUT_NAME], 40), image_tensors(40)),
    ],
)
def test_the_rendered_inputs_are_what_the_gateway_sends(card, tensors) -> None:
    assert input_tensors(card) == tensors
    config = text_format.Parse(render_config(card), model_config_pb2.ModelConfig())
    rendered = [
        (i.name, model_config_pb2.DataType.Name(i.data_type), tuple(i.dims)) for i in config.input
    ]
    expected = [(name, TRITON_DTYPES[spec.dtype], spec.dims) for name, spec in tensors.items()]
    assert rendered == expected
    assert [(o.name, tuple(o.dims)) for o in config.output] == [(OUTPUT_NAME, (8,))]


def test_a_card_whose_inputs_differ_from_its_modality_is_refused() -> None:
    with pytest.raises(ValueError, match="card inputs"):
        render_config(_card("text", ["input_ids"]))


def test_dynamic_axes_are_the_batch_and_any_length_axes() -> None:
    assert dynamic_axes(TEXT_TENSORS) == {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        OUTPUT_NAME: {0: "batch"},
    }
    assert dynamic_axes(image_tensors(224)) == {
        IMAGE_INPUT_NAME: {0: "batch"},
        OUTPUT_NAME: {0: "batch"},
    }
