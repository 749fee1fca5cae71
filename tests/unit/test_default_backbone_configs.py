"""The committed Triton config of each default backbone is exactly what `transferd export` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backbones.card import BackboneCard
from service.export import efficientnet, minilm, mpnet
from service.export.contract import OUTPUT_NAME, TEXT_INPUT_NAMES
from service.export.triton_config import render_config

ROOT = Path(__file__).resolve().parents[2]
COMMON = {"fingerprint": "0" * 64, "output_name": OUTPUT_NAME, "source": {}}


def _text_card(name: str, dim: int, max_sequence_length: int) -> BackboneCard:
    return BackboneCard(
        name=name, modality="text", dim=dim, input_names=TEXT_INPUT_NAMES, pooling="mean",
        normalized=True, tokenizer_file="tokenizer.json",
        max_sequence_length=max_sequence_length, **COMMON,
    )  # fmt: skip


IMAGE_CARD = BackboneCard(
    name=efficientnet.NAME, modality="image", dim=efficientnet.DIM,
    input_names=efficientnet.INPUT_NAMES, pooling="avg", normalized=False,
    image_size=efficientnet.IMAGE_SIZE, resize_policy=efficientnet.RESIZE_POLICY, **COMMON,
)  # fmt: skip

# The lines each config must hold beyond the common ones: its name, its inputs, its output dim.
CASES = [
    (
        _text_card(minilm.NAME, minilm.DIM, minilm.MAX_SEQUENCE_LENGTH),
        ['name: "all-minilm-l6-v2"', 'name: "input_ids"\n    data_type: TYPE_INT64\n    dims: [ -1 ]',
         'name: "embedding"\n    data_type: TYPE_FP32\n    dims: [ 384 ]'],
    ),
    (
        _text_card(mpnet.NAME, mpnet.DIM, mpnet.MAX_SEQUENCE_LENGTH),
        ['name: "all-mpnet-base-v2"',
         'name: "attention_mask"\n    data_type: TYPE_INT64\n    dims: [ -1 ]',
         'name: "embedding"\n    data_type: TYPE_FP32\n    dims: [ 768 ]'],
    ),
    (
        IMAGE_CARD,
        ['name: "efficientnet-lite0"',
         'name: "pixels"\n    data_type: TYPE_UINT8\n    dims: [ 224, 224, 3 ]',
         'name: "embedding"\n    data_type: TYPE_FP32\n    dims: [ 1280 ]'],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("card", "specific"), CASES, ids=[card.name for card, _ in CASES])
def test_committed_triton_config_is_what_export_writes(
    card: BackboneCard, specific: list[str]
) -> None:
    rendered = render_config(card)
    committed = (ROOT / "model_repo" / card.name / "config.pbtxt").read_text()
    assert rendered == committed
    for required in (
        'platform: "onnxruntime_onnx"',
        "KIND_GPU",
        "max_batch_size: 64",
        "dynamic_batching",
        *specific,
    ):
        assert required in committed
