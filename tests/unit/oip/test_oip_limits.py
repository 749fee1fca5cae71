"""ModelInfer's request limits, counted on the wire before anything is decoded: the tensors, their
dimensions, parameters and typed BYTES elements (each would decode to a Python object)."""

from __future__ import annotations

import pytest

from heads import Prediction
from service.api.decoding import check_and_parse
from service.api.oip.outputs import head_outputs
from service.api.oip.signatures import head_signature
from service.api.oip.tensors import infer_response
from service.api.request_limits import MAX_SHAPE_DIMS, MAX_TENSORS, MODEL_INFER, method_limits
from service.api.wire import MalformedMessage, count_in_path
from service.config import Settings
from service.errors import InvalidArgument, ResourceExhausted
from service.reply_size import MAX_REQUEST_ID_BYTES, check_tensor_reply, tensor_reply_bound
from tests.unit.oip.cards import head_card
from transferd.oip import grpc_predict_v2_pb2 as pb

MAX_INPUTS = 8
LIMITS = method_limits(Settings(max_inputs_per_request=MAX_INPUTS), 1000)[MODEL_INFER]
BYTES_CONTENTS = (5, 5, 8)  # inputs[].contents.bytes_contents
SHAPE = (5, 3)  # inputs[].shape


def _request(elements: int, shape: list[int] | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=shape or [elements])
    tensor.contents.bytes_contents.extend([b"x"] * elements)
    return request


def _parse(request: pb.ModelInferRequest | bytes) -> pb.ModelInferRequest:
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    return check_and_parse(MODEL_INFER, raw, LIMITS, pb.ModelInferRequest.FromString)


def test_elements_are_counted_across_every_input_and_stop_at_the_limit() -> None:
    assert not count_in_path(_request(8).SerializeToString(), BYTES_CONTENTS, 8)
    assert count_in_path(_request(9).SerializeToString(), BYTES_CONTENTS, 8)
    two = _request(5)
    two.inputs.add(name="IMAGE").contents.bytes_contents.extend([b"y"] * 4)
    assert count_in_path(two.SerializeToString(), BYTES_CONTENTS, 8)


def test_a_packed_shape_counts_each_dimension() -> None:
    shape = [1, 300, 2**40, 7]  # varints of one, two, six and one bytes
    data = _request(1, shape).SerializeToString()
    assert not count_in_path(data, SHAPE, 4, packed=True)
    assert count_in_path(data, SHAPE, 3, packed=True)
    # Unpacked (each dimension its own varint field), as an old writer may send it.
    unpacked = b"".join(b"\x18" + bytes([size]) for size in (1, 2, 3))
    message = b"\x2a" + bytes([len(unpacked)]) + unpacked
    assert count_in_path(message, SHAPE, 2, packed=True)
    assert not count_in_path(message, SHAPE, 3, packed=True)


def test_a_truncated_tensor_is_malformed() -> None:
    data = _request(3).SerializeToString()
    with pytest.raises(MalformedMessage):
        count_in_path(data[:-2], BYTES_CONTENTS, 100)


def test_model_infer_requests_within_the_limits_decode() -> None:
    assert _parse(_request(MAX_INPUTS)) == _request(MAX_INPUTS)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_request(MAX_INPUTS + 1), "inputs[].contents.bytes_contents"),
        (_request(1, [1] * (MAX_SHAPE_DIMS + 1)), "inputs[].shape"),
        (
            pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor()] * 9),
            "inputs",
        ),
        (pb.ModelInferRequest(raw_input_contents=[b""] * (MAX_TENSORS + 1)), "raw_input_contents"),
        (
            pb.ModelInferRequest(
                outputs=[
                    pb.ModelInferRequest.InferRequestedOutputTensor(
                        parameters={str(i): pb.InferParameter(bool_param=True) for i in range(65)}
                    )
                ]
            ),
            "outputs[].parameters",
        ),
    ],
)
def test_over_a_count_is_refused_naming_the_field(request_, field) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _parse(request_)
    assert refused.value.field == field


def test_the_byte_limit_is_predicts() -> None:
    with pytest.raises(ResourceExhausted):
        _parse(pb.ModelInferRequest(raw_input_contents=[b"\0" * LIMITS.max_bytes]))


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("classification", [f"l{i:04d}" for i in range(300)]),
        ("multi_label", ["é" * 50, "b\n", "c" * 70]),
        ("regression", []),
    ],
)
def test_the_reply_bound_holds_for_real_replies_and_refuses_over_the_limit(task, labels) -> None:
    card = head_card(task, labels)
    inputs = 50
    predictions = [
        Prediction(
            label=labels[0] if labels else "",
            scores=[(label, 0.5) for label in labels],
            labels=list(labels),
            value=None if labels else 1.0,
        )
    ] * inputs
    names = [spec.name for spec in head_signature(card, "text").outputs]
    reply = infer_response(
        "h" * 64, "123456789", "i" * MAX_REQUEST_ID_BYTES, head_outputs(card, predictions, names)
    )
    bound = tensor_reply_bound(card, inputs)
    assert reply.ByteSize() <= bound < 2 * reply.ByteSize() + 4096
    check_tensor_reply(card, inputs, bound)
    with pytest.raises(ResourceExhausted, match="send at most"):
        check_tensor_reply(card, inputs, bound - 1)
