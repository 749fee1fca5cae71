"""Open Inference Protocol tensors: decoded as tritonclient encodes them (raw) and as typed
contents, encoded so that tritonclient reads them, and refused with the tensor's name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as triton
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from heads import Prediction
from service.api.oip.outputs import head_outputs
from service.api.oip.signatures import Signature, TensorSpec, head_signature
from service.api.oip.tensors import (
    bytes_tensor,
    decode_input,
    fp32_tensor,
    infer_response,
    join_bytes,
    requested_outputs,
    split_bytes,
)
from service.backbones.inputs import EmbeddingInput, ImageInput, TextInput
from service.errors import InvalidArgument
from tests.unit.oip.cards import DIM, head_card
from transferd.oip import grpc_predict_v2_pb2 as pb

TEXTS = ["héllo", "a longer sentence, with punctuation", "日本語"]
# A text head of DIM-wide embeddings: takes TEXT or EMBEDDING.
TEXT_HEAD = Signature(
    (TensorSpec("TEXT", "BYTES", (-1,)), TensorSpec("EMBEDDING", "FP32", (-1, DIM))),
    (TensorSpec("LABEL", "BYTES", (-1,)), TensorSpec("SCORES", "FP32", (-1, 3))),
)


def _raw_bytes(items: list[str] | list[bytes]) -> bytes:
    """A BYTES tensor's raw contents, as tritonclient's set_data_from_numpy makes them."""
    return serialize_byte_tensor(np.array(items, dtype=np.object_)).item()


def _request(
    name: str, datatype: str, shape: list[int], raw: bytes | None = None, **contents: object
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="h")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if contents:
        tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def _refusal(request: pb.ModelInferRequest, max_inputs: int = 64) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as refused:
        decode_input(request, TEXT_HEAD, "h", max_inputs)
    return refused.value


def test_raw_bytes_split_and_join_as_tritonclient_does() -> None:
    items = [t.encode() for t in TEXTS] + [b"", b"\x00\xff" * 300]
    raw = _raw_bytes(items)
    assert split_bytes(raw, len(items), "TEXT") == items
    assert join_bytes(items) == raw
    assert list(deserialize_bytes_tensor(join_bytes(items))) == items


def test_texts_decode_from_raw_contents_and_from_typed_contents() -> None:
    raw = _request("TEXT", "BYTES", [3], _raw_bytes(TEXTS))
    typed = _request("TEXT", "BYTES", [3], bytes_contents=[t.encode() for t in TEXTS])
    for request in (raw, typed):
        assert decode_input(request, TEXT_HEAD, "h", 64) == ("TEXT", [TextInput(t) for t in TEXTS])


def test_images_decode_to_their_bytes() -> None:
    signature = Signature((TensorSpec("IMAGE", "BYTES", (-1,)),), ())
    images = [b"\x89PNG\r\n\x1a\nfirst", b"\xff\xd8\xffsecond"]
    request = _request("IMAGE", "BYTES", [2], _raw_bytes(images))
    assert decode_input(request, signature, "b", 64) == (
        "IMAGE",
        [ImageInput(image) for image in images],
    )


def test_embeddings_decode_from_raw_and_typed_contents_row_by_row() -> None:
    matrix = np.arange(2 * DIM, dtype=np.float32).reshape(2, DIM) / 7
    raw = _request("EMBEDDING", "FP32", [2, DIM], matrix.astype("<f4").tobytes())
    typed = _request("EMBEDDING", "FP32", [2, DIM], fp32_contents=matrix.ravel().tolist())
    for request in (raw, typed):
        name, inputs = decode_input(request, TEXT_HEAD, "h", 64)
        assert name == "EMBEDDING" and all(isinstance(i, EmbeddingInput) for i in inputs)
        assert np.array_equal(np.stack([i.values for i in inputs]), matrix)


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (_request("TXT", "BYTES", [1], _raw_bytes(["x"])), "inputs[0].name", "'TXT'"),
        (_request("TEXT", "FP32", [1], b"\x00" * 4), "TEXT", "datatype 'FP32'"),
        (_request("TEXT", "BYTES", [1, 1], _raw_bytes(["x"])), "TEXT", "shape [1, 1]"),
        (_request("EMBEDDING", "FP32", [1, DIM + 1], b"\x00" * 20), "EMBEDDING", "shape [1, 5]"),
        (_request("EMBEDDING", "FP32", [2, DIM], b"\x00" * 28), "EMBEDDING", "28 bytes"),
        (_request("TEXT", "BYTES", [2], _raw_bytes(["x"])), "TEXT", "hold 1 elements"),
        (_request("TEXT", "BYTES", [1], _raw_bytes(["x", "y"])), "TEXT", "bytes after"),
        (_request("TEXT", "BYTES", [1], b"\x09\x00\x00\x00abc"), "TEXT", "end inside element 0"),
        (_request("TEXT", "BYTES", [2], bytes_contents=[b"x"]), "TEXT", "1 elements"),
        (_request("TEXT", "BYTES", [1], fp32_contents=[1.0]), "TEXT", "contents.fp32_contents"),
        (_request("TEXT", "BYTES", [1], b"\x02\x00\x00\x00\xff\xfe"), "TEXT[0]", "UTF-8"),
        (_request("TEXT", "BYTES", [0], b""), "TEXT", "at least one input"),
        (_request("TEXT", "BYTES", [65], _raw_bytes(["x"] * 65)), "TEXT", "limit of 64"),
        (
            _request("TEXT", "BYTES", [1], _raw_bytes(["x"]), bytes_contents=[b"x"]),
            "'TEXT'",
            "both raw_input_contents and contents",
        ),
    ],
)
def test_bad_tensors_are_refused_naming_the_tensor(request_, field, words) -> None:
    refused = _refusal(request_)
    assert refused.field == field and words in refused.message, refused.message


def test_one_input_tensor_is_required() -> None:
    none = pb.ModelInferRequest(model_name="h")
    assert _refusal(none).field == "inputs" and "0 given" in _refusal(none).message
    two = _request("TEXT", "BYTES", [1], bytes_contents=[b"x"])
    two.inputs.add(name="EMBEDDING", datatype="FP32", shape=[1, DIM])
    assert "2 given ('TEXT', 'EMBEDDING')" in _refusal(two).message


def test_requested_outputs_default_to_all_and_unknown_ones_are_named() -> None:
    request = pb.ModelInferRequest(model_name="h")
    assert requested_outputs(request, TEXT_HEAD, "h") == ["LABEL", "SCORES"]
    request.outputs.add(name="SCORES")
    assert requested_outputs(request, TEXT_HEAD, "h") == ["SCORES"]
    request.outputs.add(name="VALUE")
    with pytest.raises(InvalidArgument, match=r"outputs\[1\].name: 'VALUE' is not an output"):
        requested_outputs(request, TEXT_HEAD, "h")
    request.outputs[1].name = "SCORES"
    with pytest.raises(InvalidArgument, match="SCORES is asked for twice"):
        requested_outputs(request, TEXT_HEAD, "h")
    del request.outputs[1]
    request.outputs[0].parameters["classification"].int64_param = 2  # class_count=2
    with pytest.raises(InvalidArgument, match="classification extension is not served"):
        requested_outputs(request, TEXT_HEAD, "h")


def test_a_reply_reads_with_tritonclient_as_numpy() -> None:
    vectors = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    labels = ["sport", "", "météo"]
    reply = infer_response(
        "h", "2", "req-1",
        [fp32_tensor("EMBEDDING", vectors), bytes_tensor("LABEL", [s.encode() for s in labels])],
    )  # fmt: skip
    result = InferResult(triton.ModelInferResponse.FromString(reply.SerializeToString()))
    assert np.array_equal(result.as_numpy("EMBEDDING"), vectors)
    assert [b.decode() for b in result.as_numpy("LABEL")] == labels
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("h", "2", "req-1")


def test_scores_columns_follow_the_heads_labels_not_the_ranking() -> None:
    card = head_card("classification", ["c", "a", "b"])
    ranked = [
        Prediction(label="a", scores=[("a", 0.7), ("b", 0.2), ("c", 0.1)]),
        Prediction(label="c", scores=[("c", 0.5), ("a", 0.3), ("b", 0.2)]),
    ]
    label, scores = head_outputs(card, ranked, ["LABEL", "SCORES"])
    assert split_bytes(label.data, 2, "LABEL") == [b"a", b"c"]
    assert scores.shape == (2, 3)
    matrix = np.frombuffer(scores.data, dtype="<f4").reshape(2, 3)
    assert np.allclose(matrix, [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    metadata = head_signature(card, "text").output("SCORES")
    assert metadata is not None and json.loads(metadata.parameters["labels"]) == ["c", "a", "b"]


def test_multi_label_heads_return_each_inputs_labels_as_a_json_list() -> None:
    card = head_card("multi_label", ["x|y", "z"])
    assert [spec.name for spec in head_signature(card, "text").outputs] == [
        "LABEL", "LABELS", "SCORES",
    ]  # fmt: skip
    predictions = [
        Prediction(label="x|y", scores=[("x|y", 0.9), ("z", 0.6)], labels=["x|y", "z"]),
        Prediction(label="z", scores=[("z", 0.4), ("x|y", 0.1)], labels=[]),
    ]
    [labels] = head_outputs(card, predictions, ["LABELS"])
    assert [json.loads(item) for item in split_bytes(labels.data, 2, "LABELS")] == [
        ["x|y", "z"],
        [],
    ]


def test_regression_heads_return_value_and_take_embeddings_without_a_served_backbone() -> None:
    card = head_card("regression", [])
    signature = head_signature(card, None)
    assert [spec.name for spec in signature.inputs] == ["EMBEDDING"]
    assert [(spec.name, spec.shape) for spec in signature.outputs] == [("VALUE", (-1,))]
    [value] = head_outputs(card, [Prediction(value=1.5), Prediction(value=-2.0)], ["VALUE"])
    assert value.shape == (2,) and np.frombuffer(value.data, "<f4").tolist() == [1.5, -2.0]
