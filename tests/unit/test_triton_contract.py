"""The start-up check of a Triton model against the backbone card, on real metadata messages."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2

from service.backbones.card import BackboneCard
from service.backbones.modalities.tensors import TEXT_TENSORS
from service.backbones.runtimes.base import BackboneLoadError
from service.backbones.runtimes.triton_contract import check_metadata

CARD = BackboneCard(
    name="all-minilm-l6-v2", modality="text", dim=384, fingerprint="0" * 64,
    input_names=["input_ids", "attention_mask"], output_name="embedding", pooling="mean",
    normalized=True, source={},
)  # fmt: skip
CONTRACT = TEXT_TENSORS

TensorMetadata = service_pb2.ModelMetadataResponse.TensorMetadata


def metadata(
    inputs: tuple[tuple[str, str, list[int]], ...] = (
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ),
    output: tuple[str, str, list[int]] = ("embedding", "FP32", [-1, 384]),
) -> service_pb2.ModelMetadataResponse:
    """What Triton's GetModelMetadata answers for the exported MiniLM, unless told otherwise."""
    return service_pb2.ModelMetadataResponse(
        name=CARD.name,
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in inputs],
        outputs=[TensorMetadata(name=output[0], datatype=output[1], shape=output[2])],
    )


def test_the_exported_model_passes() -> None:
    check_metadata(CARD, CONTRACT, metadata(), max_batch_size=64)


def test_input_order_does_not_matter() -> None:
    swapped = (("attention_mask", "INT64", [-1, -1]), ("input_ids", "INT64", [-1, -1]))
    check_metadata(CARD, CONTRACT, metadata(inputs=swapped), max_batch_size=64)


@pytest.mark.parametrize(
    ("meta", "max_batch_size", "message"),
    [
        (metadata(), 0, "max_batch_size is 0"),
        (metadata(inputs=(("input_ids", "INT64", [-1, -1]),)), 64, "inputs ['input_ids']"),
        (
            metadata(
                inputs=(("input_ids", "INT32", [-1, -1]), ("attention_mask", "INT64", [-1, -1]))
            ),
            64,
            "input input_ids is INT32, not INT64",
        ),
        (
            metadata(
                inputs=(("input_ids", "INT64", [-1, 128]), ("attention_mask", "INT64", [-1, -1]))
            ),
            64,
            "input input_ids takes dims [128], we send [-1]",
        ),
        (metadata(output=("pooled", "FP32", [-1, 384])), 64, "no output embedding"),
        (metadata(output=("embedding", "FP16", [-1, 384])), 64, "is FP16[-1, 384]"),
        (metadata(output=("embedding", "FP32", [-1, 768])), 64, "not FP32 [-1, 384]"),
    ],
)
def test_a_different_model_is_refused_naming_the_difference(
    meta: service_pb2.ModelMetadataResponse, max_batch_size: int, message: str
) -> None:
    with pytest.raises(BackboneLoadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_metadata(CARD, CONTRACT, meta, max_batch_size)
