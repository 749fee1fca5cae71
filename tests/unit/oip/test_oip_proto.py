"""Our Open Inference Protocol stubs against tritonclient's own: wire compatibility is checked,
not assumed. Every message we share with `tritonclient.grpc.service_pb2` must have the same
fields (names, numbers, types, repetition, packing, message types, oneofs), but for MLServer's
two `parameters` fields, whose numbers must be free in Triton's messages."""

from __future__ import annotations

import numpy as np
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as triton

from transferd.oip import grpc_predict_v2_pb2 as ours

# MLServer's extension of the protocol: fields of ours that Triton's messages lack.
EXTENSIONS = {
    "inference.ModelMetadataResponse.parameters",
    "inference.ModelMetadataResponse.TensorMetadata.parameters",
}
SERVED_RPCS = {
    "ServerLive",
    "ServerReady",
    "ServerMetadata",
    "ModelReady",
    "ModelMetadata",
    "ModelInfer",
}


def _messages(file: FileDescriptor) -> dict[str, Descriptor]:
    """Every message of the file by full name, nested ones and map entries included."""
    found: dict[str, Descriptor] = {}

    def add(message: Descriptor) -> None:
        found[message.full_name] = message
        for nested in message.nested_types:
            add(nested)

    for message in file.message_types_by_name.values():
        add(message)
    return found


def _wire(field: FieldDescriptor) -> tuple[object, ...]:
    """All of a field that decides its encoding and its meaning on the wire."""
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.is_packed,
        field.message_type.full_name if field.message_type else None,
        field.containing_oneof.name if field.containing_oneof else None,
    )


def test_the_stubs_load_beside_tritonclients_in_one_process() -> None:
    # Both define inference.ModelInferRequest & co: ours must live in a pool of its own.
    assert ours.DESCRIPTOR.pool is not triton.DESCRIPTOR.pool
    assert ours.DESCRIPTOR.package == triton.DESCRIPTOR.package == "inference"


def test_every_shared_message_has_tritons_fields_and_numbers() -> None:
    theirs = _messages(triton.DESCRIPTOR)
    mine = _messages(ours.DESCRIPTOR)
    assert len(mine) >= 20  # the six RPCs' messages, their nested tensors and map entries
    # The extensions' map entries are ours alone; they are the protocol's map<string,
    # InferParameter>, as every other `parameters` field.
    extension_entries = {
        mine[name.rpartition(".")[0]].fields_by_name["parameters"].message_type.full_name
        for name in EXTENSIONS
    }
    protocol_entry = theirs["inference.ModelInferRequest.ParametersEntry"]
    for name in extension_entries:
        assert [_wire(f) for f in mine.pop(name).fields] == [
            _wire(f) for f in protocol_entry.fields
        ]
    for name, message in mine.items():
        assert name in theirs, f"{name} is not a message of tritonclient's protocol"
        their_fields = {field.name: _wire(field) for field in theirs[name].fields}
        our_fields = {field.name: _wire(field) for field in message.fields}
        for field_name, wire in our_fields.items():
            if f"{name}.{field_name}" in EXTENSIONS:
                assert field_name not in their_fields, f"{name}.{field_name}"
                their_numbers = {their[0] for their in their_fields.values()}
                assert wire[0] not in their_numbers, f"{name}.{field_name}: number taken"
            else:
                assert their_fields.get(field_name) == wire, f"{name}.{field_name}"
        missing = set(their_fields) - set(our_fields)
        assert not missing, f"{name} lacks tritonclient's fields {sorted(missing)}"


def test_the_served_rpcs_have_tritons_names_types_and_streaming() -> None:
    our_service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    their_service = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert our_service.full_name == their_service.full_name == "inference.GRPCInferenceService"
    assert set(our_service.methods_by_name) == SERVED_RPCS
    for name, method in our_service.methods_by_name.items():
        theirs = their_service.methods_by_name[name]
        assert method.input_type.full_name == theirs.input_type.full_name, name
        assert method.output_type.full_name == theirs.output_type.full_name, name
        assert (method.client_streaming, method.server_streaming) == (
            theirs.client_streaming,
            theirs.server_streaming,
        ), name


def test_a_reply_of_ours_reads_with_tritonclient() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    reply = ours.ModelInferResponse(model_name="m", model_version="1", id="r")
    reply.outputs.add(name="EMBEDDING", datatype="FP32", shape=[2, 3])
    reply.raw_output_contents.append(vectors.tobytes())
    reply.outputs.add(name="LABEL", datatype="BYTES", shape=[2])
    reply.raw_output_contents.append(b"\x02\x00\x00\x00ab\x00\x00\x00\x00")
    result = InferResult(triton.ModelInferResponse.FromString(reply.SerializeToString()))
    assert np.array_equal(result.as_numpy("EMBEDDING"), vectors)
    assert list(result.as_numpy("LABEL")) == [b"ab", b""]
    assert result.get_response().id == "r"


def test_metadata_parameters_are_skipped_by_tritonclient_and_read_by_ours() -> None:
    labels = ours.InferParameter(string_param='["a", "b"]')
    reply = ours.ModelMetadataResponse(
        name="h",
        versions=["1", "2"],
        outputs=[
            ours.ModelMetadataResponse.TensorMetadata(
                name="SCORES", datatype="FP32", shape=[-1, 2], parameters={"labels": labels}
            )
        ],
        parameters={"labels": labels},
    )
    data = reply.SerializeToString()
    seen = triton.ModelMetadataResponse.FromString(data)
    assert list(seen.versions) == ["1", "2"] and list(seen.outputs[0].shape) == [-1, 2]
    assert ours.ModelMetadataResponse.FromString(data) == reply
