"""The optional float16 export (`transferd export --fp16`), for GPU serving on Triton.

Weights and activations become float16 (half the file, tensor cores on the GPU); the graph's
inputs and output keep their types (int64 ids and mask in, float32 embedding out), so
config.pbtxt, the card's contract and the gateway are the same as for a float32 export. The
converted model is verified against the torch model like any other export (ONNX Runtime runs the
float16 graph on CPU for that), and it has its own fingerprint: heads trained on the float32
export are refused with it (FAILED_PRECONDITION), and the other way round.
"""

from __future__ import annotations

from pathlib import Path

from service.backbones.card import FP16, FP32


def precision(fp16: bool) -> str:
    """The card's `export.precision` for the flag."""
    return FP16 if fp16 else FP32


def convert_to_fp16(model_file: Path) -> None:
    """Rewrites `model_file` in float16, keeping the types of its inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(model_file)), keep_io_types=True)
    onnx.save(model, str(model_file))
