"""The committed Triton config of each default backbone is exactly what `transferd export` writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from service.backbones.card import BackboneCard
from service.export import efficientnet, minilm, mpnet, quantize
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
        _text_card(minilm.NAME, minilm.DIM, minilm.MAX_SEQUENCE_LENGTH).model_copy(
            update={"name": quantize.variant_name(minilm.NAME), "export": {"precision": "int8"}}
        ),
        ['name: "all-minilm-l6-v2-int8"', "kind: KIND_CPU", "production configuration for CPU"],
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
    for required in ('platform: "onnxruntime_onnx"', "max_batch_size: 64", "dynamic_batching"):
        assert required in committed
    for required in specific:
        assert required in committed


@pytest.mark.parametrize(("card", "specific"), CASES, ids=[card.name for card, _ in CASES])
def test_float_backbones_run_tensorrt_fp16_on_gpus_and_int8_runs_on_cpus(
    card: BackboneCard, specific: list[str]
) -> None:
    """The config parses as Triton's ModelConfig. Float backbones: GPU instances, TensorRT in
    FP16 with a bounded workspace, cached engines, a profile up to a full batch of the longest
    input, pinned memory. int8: CPU instances and no GPU accelerator."""
    config = text_format.Parse(render_config(card), model_config_pb2.ModelConfig())
    kinds = {group.kind for group in config.instance_group}
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if card.export.get("precision") == "int8":
        assert kinds == {model_config_pb2.ModelInstanceGroup.KIND_CPU}
        assert not accelerators
        return
    assert kinds == {model_config_pb2.ModelInstanceGroup.KIND_GPU}
    (tensorrt,) = accelerators
    parameters = dict(tensorrt.parameters)
    assert tensorrt.name == "tensorrt" and parameters["precision_mode"] == "FP16"
    assert int(parameters["max_workspace_size_bytes"]) == 1 << 30
    assert parameters["trt_engine_cache_enable"] == "1"
    longest = card.max_sequence_length or card.image_size
    assert f"64x{longest}" in parameters["trt_profile_max_shapes"]
    assert config.optimization.input_pinned_memory.enable
    assert config.optimization.output_pinned_memory.enable
