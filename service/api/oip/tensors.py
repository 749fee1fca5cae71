"""Tensor data of the Open Inference Protocol ⇄ domain inputs and numpy: the wire format.

A request's input elements come in `raw_input_contents` (tritonclient's default) or in the
tensor's typed `contents`; both are read. Raw numbers are little-endian in row-major order, and a
raw BYTES element is its length (4 bytes, unsigned little-endian) followed by its bytes. Replies
use `raw_output_contents`, as Triton does, so that tritonclient's `InferResult.as_numpy` reads
them. Every refusal is INVALID_ARGUMENT naming the tensor.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.api.oip.signatures import BYTES, EMBEDDING, FP32, IMAGE, TEXT, Signature, TensorSpec
from service.backbones.inputs import EmbeddingInput, ImageInput, Input, TextInput
from service.errors import InvalidArgument, shown
from transferd.oip import grpc_predict_v2_pb2 as pb

_LENGTH = struct.Struct("<I")
_LITTLE_FP32 = np.dtype("<f4")
#: The typed contents field that holds each datatype's elements.
_CONTENTS_OF = {BYTES: "bytes_contents", FP32: "fp32_contents"}


@dataclass(frozen=True)
class OutputTensor:
    """One output of a reply: its metadata, its raw contents and its string parameters."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    parameters: dict[str, str] = field(default_factory=dict)


def split_bytes(data: bytes, count: int, name: str) -> list[bytes]:
    """The `count` elements of a raw BYTES tensor, each a 4-byte length then its bytes.

    Raises:
        InvalidArgument: naming `name`, when the bytes do not hold exactly `count` elements.
    """
    items: list[bytes] = []
    at, end = 0, len(data)
    for index in range(count):
        if at + _LENGTH.size > end:
            raise InvalidArgument(
                name, f"raw contents hold {index} elements; its shape says {count}"
            )
        (length,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + length > end:
            raise InvalidArgument(
                name,
                f"raw contents end inside element {index} ({length} bytes announced, "
                f"{end - at} left)",
            )
        items.append(data[at : at + length])
        at += length
    if at != end:
        raise InvalidArgument(
            name, f"raw contents have {end - at} bytes after the {count} elements of its shape"
        )
    return items


def join_bytes(items: Sequence[bytes]) -> bytes:
    """Raw contents of a BYTES tensor: each element's length (4 bytes), then the element."""
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def the_input(
    request: pb.ModelInferRequest,
) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes | None]:
    """The request's one input tensor, with its raw contents (None: its typed contents hold
    the elements).

    Raises:
        InvalidArgument: no input, several inputs, or raw contents that do not match them.
    """
    if len(request.inputs) != 1:
        names = ", ".join(shown(tensor.name) for tensor in request.inputs)
        raise InvalidArgument(
            "inputs",
            f"one input tensor is required, {len(request.inputs)} given"
            + (f" ({names})" if names else ""),
        )
    tensor = request.inputs[0]
    raw = request.raw_input_contents
    if len(raw) > 1:
        raise InvalidArgument("raw_input_contents", f"has {len(raw)} entries for 1 input tensor")
    if raw and tensor.HasField("contents"):
        raise InvalidArgument(
            shown(tensor.name), "has both raw_input_contents and contents; send one of them"
        )
    return tensor, (raw[0] if raw else None)


def decode_input(
    request: pb.ModelInferRequest, signature: Signature, model: str, max_inputs: int
) -> tuple[str, list[Input]]:
    """The request's input as domain inputs, one per element (row) of its tensor.

    Args:
        request: The ModelInfer request.
        signature: The model's tensors.
        model: The model's name, for errors.
        max_inputs: The most inputs a request may carry (the first dimension).

    Returns:
        The tensor's name (errors about its elements say ``NAME[i]``) and the inputs.

    Raises:
        InvalidArgument: naming the tensor: not an input of the model, another datatype or
            shape, elements that do not match the shape, or a text that is not UTF-8.
    """
    tensor, raw = the_input(request)
    spec = signature.input(tensor.name)
    if spec is None:
        takes = " or ".join(s.name for s in signature.inputs)
        raise InvalidArgument(
            "inputs[0].name",
            f"{shown(tensor.name)} is not an input of model {shown(model)}, which takes {takes}",
        )
    name = spec.name
    if tensor.datatype != spec.datatype:
        raise InvalidArgument(
            name, f"has datatype {shown(tensor.datatype)}; {name} is {spec.datatype}"
        )
    shape = _checked_shape(tuple(tensor.shape), spec, max_inputs)
    count = math.prod(shape)
    if spec.datatype == BYTES:
        items = split_bytes(raw, count, name) if raw is not None else _typed(tensor, spec, count)
        if name == TEXT:
            return name, [TextInput(_text(item, f"{name}[{i}]")) for i, item in enumerate(items)]
        if name == IMAGE:
            return name, [ImageInput(bytes(item)) for item in items]
    elif name == EMBEDDING:
        values = (
            _raw_fp32(raw, count, name)
            if raw is not None
            else np.asarray(_typed(tensor, spec, count), dtype=np.float32)
        )
        return name, [EmbeddingInput(row) for row in values.reshape(shape)]
    raise AssertionError(f"no decoding for input {name} ({spec.datatype})")  # a signature bug


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join("n" if size < 0 else str(size) for size in shape) + "]"


def _checked_shape(shape: tuple[int, ...], spec: TensorSpec, max_inputs: int) -> tuple[int, ...]:
    """The request's shape, when it is the spec's with the batch dimension in 1..max_inputs."""
    fits = len(shape) == len(spec.shape) and all(
        size == want for size, want in zip(shape, spec.shape, strict=True) if want >= 0
    )
    if not fits:
        raise InvalidArgument(
            spec.name,
            f"has shape {list(shape)}; {spec.name} is {spec.datatype} {_shape_text(spec.shape)}",
        )
    inputs = shape[0]
    if inputs < 1:
        raise InvalidArgument(spec.name, f"has shape {list(shape)}; at least one input is required")
    if inputs > max_inputs:
        raise InvalidArgument(
            spec.name, f"{inputs} inputs exceed the limit of {max_inputs} per request"
        )
    return shape


def _typed(
    tensor: pb.ModelInferRequest.InferInputTensor, spec: TensorSpec, count: int
) -> Sequence[Any]:
    """The elements of a tensor's typed contents: exactly `count` of them, in the one field
    of its datatype."""
    contents = tensor.contents
    wanted = _CONTENTS_OF[spec.datatype]
    for other in contents.DESCRIPTOR.fields:
        if other.name != wanted and len(getattr(contents, other.name)):
            raise InvalidArgument(
                spec.name,
                f"has elements in contents.{other.name}; {spec.datatype} elements go in "
                f"contents.{wanted}",
            )
    elements: Sequence[Any] = getattr(contents, wanted)  # bytes or floats, by datatype
    if len(elements) != count:
        raise InvalidArgument(
            spec.name,
            f"has {len(elements)} elements in contents.{wanted} (and no raw_input_contents); "
            f"its shape {list(tensor.shape)} says {count}",
        )
    return elements


def _raw_fp32(data: bytes, count: int, name: str) -> np.ndarray:
    if len(data) != count * _LITTLE_FP32.itemsize:
        raise InvalidArgument(
            name,
            f"raw contents have {len(data)} bytes; its shape says {count} FP32 elements "
            f"({count * _LITTLE_FP32.itemsize} bytes)",
        )
    return np.frombuffer(data, dtype=_LITTLE_FP32).astype(np.float32, copy=False)


def _text(item: bytes, where: str) -> str:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(where, "is not valid UTF-8") from None


def requested_outputs(request: pb.ModelInferRequest, signature: Signature, model: str) -> list[str]:
    """The outputs to return, in order: those the request names, else every output. Their
    parameters are ignored, but for Triton's `classification`, which would ask for another
    output than the one returned.

    Raises:
        InvalidArgument: an output the model does not have, one named twice, or one asked for
            as Triton's classification.
    """
    if not request.outputs:
        return [spec.name for spec in signature.outputs]
    names: list[str] = []
    for index, output in enumerate(request.outputs):
        if signature.output(output.name) is None:
            returns = ", ".join(spec.name for spec in signature.outputs)
            raise InvalidArgument(
                f"outputs[{index}].name",
                f"{shown(output.name)} is not an output of model {shown(model)}, which returns "
                f"{returns}",
            )
        if output.name in names:
            raise InvalidArgument(f"outputs[{index}].name", f"{output.name} is asked for twice")
        if "classification" in output.parameters:  # tritonclient's class_count
            raise InvalidArgument(
                f"outputs[{index}].parameters",
                "Triton's classification extension is not served: LABEL and SCORES hold the "
                "labels and every label's score",
            )
        names.append(output.name)
    return names


def fp32_tensor(
    name: str, values: np.ndarray, parameters: dict[str, str] | None = None
) -> OutputTensor:
    data = np.ascontiguousarray(values, dtype=_LITTLE_FP32).tobytes()
    return OutputTensor(name, FP32, tuple(values.shape), data, parameters or {})


def bytes_tensor(name: str, items: Sequence[bytes]) -> OutputTensor:
    return OutputTensor(name, BYTES, (len(items),), join_bytes(items))


def infer_response(
    model: str, version: str, request_id: str, outputs: Sequence[OutputTensor]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for output in outputs:
        tensor = response.outputs.add(
            name=output.name, datatype=output.datatype, shape=output.shape
        )
        for key, value in output.parameters.items():
            tensor.parameters[key].string_param = value
        response.raw_output_contents.append(output.data)
    return response
