"""Fuzzing every RPC's request decoding, converters and validators, over real gRPC.

Hypothesis builds requests of each method from random field values, and then damages some of
them on the wire (truncated, bytes flipped, fields inserted, random bytes). Whatever arrives, the
server must answer with a status a client caused (never INTERNAL, UNKNOWN or DATA_LOSS) and stay
up. `make test` runs a short pass (FUZZ_EXAMPLES, default 60 per method); `make fuzz` a long one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.client import bearer
from devtools.launcher import ServerProcess, health_status
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server
from transferd.oip import grpc_predict_v2_pb2 as oip_pb2
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # CI: the same cases every run
)
# Statuses a client's bad input may cause. INTERNAL, UNKNOWN and DATA_LOSS never may.
CLIENT_CAUSED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator:
    process = start_server(tmp_path_factory.mktemp("fuzz"), model_repo)
    yield process
    assert health_status(process.address) == 1, "the server is not SERVING after the fuzz"
    process.stop()


@pytest.fixture(scope="module")
def fuzz_channel(fuzz_server: ServerProcess) -> Iterator[tuple[grpc.Channel, tuple]]:
    key = fuzz_server.create_tenant_key("fuzz")
    with grpc.insecure_channel(fuzz_server.address) as channel:
        yield channel, bearer(key)


# Field values: mostly plausible, sometimes hostile.
names = st.one_of(
    st.sampled_from(["", BACKBONE, "efficientnet-lite0", "head-1", "a" * 65, "acme\n", "../x"]),
    st.text(max_size=80),
)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
embeddings = st.builds(
    common_pb2.Embedding,
    values=st.one_of(st.lists(floats, max_size=8), st.lists(floats, min_size=384, max_size=384)),
)
inputs = st.one_of(
    st.builds(common_pb2.Input),
    st.builds(common_pb2.Input, text=st.text(max_size=300)),
    st.builds(common_pb2.Input, image=st.binary(max_size=300)),
    st.builds(common_pb2.Input, embedding=embeddings),
)
examples = st.builds(
    heads_pb2.Example,
    input=inputs,
    label=st.text(max_size=20),
    labels=st.lists(st.text(max_size=10), max_size=4),
    value=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
kinds = st.sampled_from(["", "logistic_regression", "linear_svm", "knn", "ridge", "mlp", "x"])
params = st.dictionaries(
    st.sampled_from(["C", "n_neighbors", "epochs", "hidden", "alpha", "batch_size", "zzz"]),
    st.one_of(st.sampled_from(["1", "0", "-1", "1e9", "nan", "abc", ""]), st.text(max_size=8)),
    max_size=4,
)
versions = st.integers(min_value=0, max_value=2**32 - 1)
# Open Inference Protocol tensors: our names and types, and others.
model_versions = st.one_of(st.sampled_from(["", "0", "1", "2", "x", "9" * 12]), st.text(max_size=8))
tensor_names = st.one_of(
    st.sampled_from(["TEXT", "IMAGE", "EMBEDDING", "LABEL", "SCORES", "VALUE"]),
    st.text(max_size=12),
)
contents = st.builds(
    oip_pb2.InferTensorContents,
    bytes_contents=st.lists(st.binary(max_size=40), max_size=4),
    fp32_contents=st.lists(floats, max_size=12),
    int_contents=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=2),
)
input_tensors = st.builds(
    oip_pb2.ModelInferRequest.InferInputTensor,
    name=tensor_names,
    datatype=st.sampled_from(["BYTES", "FP32", "INT8", "", "bytes"]),
    shape=st.lists(st.integers(-2, 400), max_size=3),
    contents=st.one_of(st.none(), contents),
)

REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    "/transferd.v1.EmbeddingService/Embed": st.builds(
        embedding_pb2.EmbedRequest, backbone=names, inputs=st.lists(inputs, max_size=6)
    ),
    "/transferd.v1.EmbeddingService/ListBackbones": st.builds(embedding_pb2.ListBackbonesRequest),
    "/transferd.v1.HeadService/TrainHead": st.builds(
        heads_pb2.TrainHeadRequest,
        head=names,
        backbone=names,
        kind=kinds,
        examples=st.lists(examples, max_size=8),
        params=params,
        validation_fraction=st.one_of(st.none(), st.floats(allow_nan=True, width=32)),
    ),
    "/transferd.v1.HeadService/Predict": st.builds(
        heads_pb2.PredictRequest,
        head=names,
        version=versions,
        inputs=st.lists(inputs, max_size=6),
        top_k=st.integers(min_value=0, max_value=2**32 - 1),
    ),
    "/transferd.v1.HeadService/GetJob": st.builds(heads_pb2.GetJobRequest, job_id=names),
    "/transferd.v1.HeadService/CancelJob": st.builds(heads_pb2.CancelJobRequest, job_id=names),
    "/transferd.v1.HeadService/GetHead": st.builds(
        heads_pb2.GetHeadRequest, head=names, version=versions
    ),
    "/transferd.v1.HeadService/DeleteHead": st.builds(
        heads_pb2.DeleteHeadRequest, head=names, version=versions
    ),
    "/transferd.v1.HeadService/ListHeads": st.builds(heads_pb2.ListHeadsRequest),
    "/inference.GRPCInferenceService/ModelInfer": st.builds(
        oip_pb2.ModelInferRequest,
        model_name=names,
        model_version=model_versions,
        id=st.text(max_size=20),
        inputs=st.lists(input_tensors, max_size=3),
        outputs=st.lists(
            st.builds(oip_pb2.ModelInferRequest.InferRequestedOutputTensor, name=tensor_names),
            max_size=3,
        ),
        raw_input_contents=st.lists(st.binary(max_size=64), max_size=2),
    ),
    "/inference.GRPCInferenceService/ModelMetadata": st.builds(
        oip_pb2.ModelMetadataRequest, name=names, version=model_versions
    ),
    "/inference.GRPCInferenceService/ModelReady": st.builds(
        oip_pb2.ModelReadyRequest, name=names, version=model_versions
    ),
}


@st.composite
def wire_bytes(draw: st.DrawFn, requests: st.SearchStrategy[Message]) -> bytes:
    """A valid request, often damaged on the wire."""
    data = bytearray(draw(requests).SerializeToString())
    damage = draw(st.sampled_from(["none", "truncate", "flip", "insert", "random"]))
    if damage == "truncate" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif damage == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif damage == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif damage == "random":
        data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


def _call(channel: grpc.Channel, method: str, body: bytes, metadata: tuple) -> grpc.StatusCode:
    call = channel.unary_unary(method)  # raw bytes: what arrives is exactly what we drew
    try:
        call(body, metadata=metadata, timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_no_request_makes_the_server_fail(fuzz_channel, method: str) -> None:
    channel, metadata = fuzz_channel

    @FUZZ
    @given(body=wire_bytes(REQUESTS[method]))
    def check(body: bytes) -> None:
        code = _call(channel, method, body, metadata)
        assert code in CLIENT_CAUSED, (code, body[:200])

    check()


def test_watch_job_with_fuzzed_ids_ends_cleanly(fuzz_channel) -> None:
    channel, metadata = fuzz_channel
    watch = channel.unary_stream("/transferd.v1.HeadService/WatchJob")

    @FUZZ
    @given(body=wire_bytes(st.builds(heads_pb2.WatchJobRequest, job_id=names)))
    def check(body: bytes) -> None:
        try:
            list(watch(body, metadata=metadata, timeout=30))
        except grpc.RpcError as error:
            assert error.code() in CLIENT_CAUSED, (error.code(), body[:200])

    check()


PARSERS = {
    "/transferd.v1.EmbeddingService/Embed": embedding_pb2.EmbedRequest.FromString,
    "/transferd.v1.HeadService/TrainHead": heads_pb2.TrainHeadRequest.FromString,
    "/transferd.v1.HeadService/Predict": heads_pb2.PredictRequest.FromString,
    "/inference.GRPCInferenceService/ModelInfer": oip_pb2.ModelInferRequest.FromString,
}


@pytest.mark.parametrize("method", sorted(PARSERS))
def test_the_decoder_refuses_only_with_client_errors(method: str) -> None:
    """In-process, many more cases: the raw checks and the decode raise nothing but the two
    client errors, whatever the bytes."""
    from service.api.decoding import check_and_parse
    from service.api.request_limits import method_limits
    from service.config import Settings
    from service.errors import InvalidArgument, ResourceExhausted

    limits = method_limits(Settings(max_inputs_per_request=4, max_examples_per_job=4), 64)[method]

    @settings(max_examples=EXAMPLES * 5, deadline=None, derandomize=FUZZ.derandomize)
    @given(body=wire_bytes(REQUESTS[method]))
    def check(body: bytes) -> None:
        try:
            check_and_parse(method, body, limits, PARSERS[method])
        except (InvalidArgument, ResourceExhausted):
            pass

    check()
