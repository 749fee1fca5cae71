"""The committed Triton config of efficientnet-lite0 is exactly what `transferd export` writes."""

from __future__ import annotations

from pathlib import Path

from service.backbones.card import BackboneCard
from service.export import efficientnet
from service.export.contract import OUTPUT_NAME
from service.export.triton_config import render_config

ROOT = Path(__file__).resolve().parents[2]


def test_committed_triton_config_is_what_export_writes() -> None:
    card = BackboneCard(
        name=efficientnet.NAME, modality="image", dim=efficientnet.DIM, fingerprint="0" * 64,
        input_names=efficientnet.INPUT_NAMES, output_name=OUTPUT_NAME,
        pooling="avg", normalized=False, source={}, image_size=efficientnet.IMAGE_SIZE,
        resize_policy=efficientnet.RESIZE_POLICY,
    )  # fmt: skip
    rendered = render_config(card)
    committed = (ROOT / "model_repo" / efficientnet.NAME / "config.pbtxt").read_text()
    assert rendered == committed
    for required in (
        'name: "efficientnet-lite0"',
        'platform: "onnxruntime_onnx"',
        "KIND_GPU",
        "max_batch_size: 64",
        "dynamic_batching",
        'name: "pixels"\n    data_type: TYPE_UINT8\n    dims: [ 224, 224, 3 ]',
        'name: "embedding"\n    data_type: TYPE_FP32\n    dims: [ 1280 ]',
    ):
        assert required in committed
