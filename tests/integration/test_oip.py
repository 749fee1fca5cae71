"""The Open Inference Protocol v2 through tritonclient itself, against the real server.

Models are backbones and the caller's own heads, with the same API keys as the rest of the API;
ModelInfer answers what Embed and Predict answer, and bad tensors, missing keys and other
tenants' heads are refused with the protocol's status codes.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from devtools.client import bearer
from devtools.launcher import ServerProcess, free_port, health_status
from service.config import Settings
from service.server import Server
from tests.conftest import BACKBONE
from tests.integration.conftest import labelled, text_request, topics, train_to_success, vectors
from transferd.oip import grpc_predict_v2_pb2 as oip_pb2
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

IMAGE_BACKBONE = "efficientnet-lite0"
HEAD = "oip-topics"
REGRESSION_HEAD = "oip-length"
TEST_TEXTS = [text for text, _ in labelled(topics()["test"])]


def _texts(name: str, texts: list[str]) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


def _floats(name: str, values: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(values.shape), "FP32")
    tensor.set_data_from_numpy(values.astype(np.float32))
    return tensor


def _metadata(
    client: triton.InferenceServerClient, model: str, headers: dict[str, str], version: str = ""
) -> oip_pb2.ModelMetadataResponse:
    """ModelMetadata with its `parameters`: tritonclient's stubs lack MLServer's extension and
    keep those fields as unknown ones, which our stubs read from the same bytes."""
    reply = client.get_model_metadata(model, version, headers=headers)
    return oip_pb2.ModelMetadataResponse.FromString(reply.SerializeToString())


def _refusal(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return refused.value


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as oip:
        yield oip


@pytest.fixture(scope="module")
def headers(tenant_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tenant_key}"}


@pytest.fixture(scope="module")
def topic_head(heads_stub: heads_pb2_grpc.HeadServiceStub) -> heads_pb2.Head:
    """Version 1 knows two topics, version 2 (the latest) all six."""
    train = topics()["train"]
    two = {topic: train[topic] for topic in ("cooking", "sports")}
    train_to_success(heads_stub, _classification(HEAD, two))
    _job, head = train_to_success(heads_stub, _classification(HEAD, train))
    assert head.version == 2 and len(head.labels) == 6
    return head


def _classification(head: str, part: dict[str, list[str]]) -> heads_pb2.TrainHeadRequest:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=text), label=label)
        for text, label in labelled(part)
    ]
    return heads_pb2.TrainHeadRequest(head=head, backbone=BACKBONE, examples=examples)


@pytest.mark.both_runtimes
def test_server_live_ready_and_metadata_need_no_key(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "transferd" and metadata.version


def test_server_ready_follows_health(tmp_path: Path, model_repo: Path) -> None:
    """NOT ready while the backbones load (health NOT_SERVING), ready once they serve."""
    settings = Settings(
        grpc_host="127.0.0.1", grpc_port=free_port(), metrics_port=0,
        model_repo=model_repo, data_dir=tmp_path,
    )  # fmt: skip

    def probe(address: str) -> tuple[int | None, bool, bool]:
        with triton.InferenceServerClient(address) as oip:
            return health_status(address), oip.is_server_ready(), oip.is_server_live()

    async def scenario() -> list[tuple[int | None, bool, bool]]:
        server = Server(settings)
        await server.listen()
        address = f"127.0.0.1:{server.port}"
        loading = await asyncio.to_thread(probe, address)
        await server.load()
        serving = await asyncio.to_thread(probe, address)
        await server.stop()
        return [loading, serving]

    loading, serving = asyncio.run(scenario())
    assert loading == (2, False, True)  # NOT_SERVING, not ready, live
    assert serving == (1, True, True)  # SERVING


@pytest.mark.both_runtimes  # on Triton, tritonclient's stubs of the same names are loaded too
def test_reflection_describes_the_protocol(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        replies = list(
            reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="inference.GRPCInferenceService"
                        ),
                    ]
                )
            )
        )
    services = {s.name for s in replies[0].list_services_response.service}
    assert {"inference.GRPCInferenceService", "transferd.v1.HeadService"} <= services
    [file] = replies[1].file_descriptor_response.file_descriptor_proto
    described = descriptor_pb2.FileDescriptorProto.FromString(file)
    assert described.package == "inference"
    assert {m.name for m in described.service[0].method} >= {"ModelInfer", "ServerLive"}
    metadata = next(m for m in described.message_type if m.name == "ModelMetadataResponse")
    assert "parameters" in {f.name for f in metadata.field}  # ours, not tritonclient's


@pytest.mark.both_runtimes
def test_a_backbone_embeds_texts_as_embed_does(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    embedding_stub: embedding_pb2_grpc.EmbeddingServiceStub,
    sentences: list[str],
) -> None:
    texts = sentences[:5]
    result = client.infer(BACKBONE, [_texts("TEXT", texts)], headers=headers, request_id="r-1")
    embedded = result.as_numpy("EMBEDDING")
    assert embedded.shape == (5, 384) and embedded.dtype == np.float32
    expected = vectors(embedding_stub.Embed(text_request(texts)))
    assert np.allclose(embedded, expected, atol=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (BACKBONE, "1", "r-1")
    assert client.is_model_ready(BACKBONE, headers=headers)
    metadata = client.get_model_metadata(BACKBONE, headers=headers)
    assert list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("TEXT", "BYTES", [-1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("EMBEDDING", "FP32", [-1, 384])
    ]


def test_the_image_backbone_embeds_a_png_as_embed_does(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    embedding_stub: embedding_pb2_grpc.EmbeddingServiceStub,
) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (48, 64, 3), np.uint8)).save(
        buffer, "PNG"
    )
    png = buffer.getvalue()
    image = triton.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=np.object_))
    embedded = client.infer(IMAGE_BACKBONE, [image], headers=headers).as_numpy("EMBEDDING")
    reply = embedding_stub.Embed(
        embedding_pb2.EmbedRequest(backbone=IMAGE_BACKBONE, inputs=[common_pb2.Input(image=png)])
    )
    assert embedded.shape == (1, 1280)
    assert np.allclose(embedded, vectors(reply), atol=1e-5)


def test_a_head_labels_and_scores_as_predict_does_in_metadatas_label_order(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    heads_stub: heads_pb2_grpc.HeadServiceStub,
    topic_head: heads_pb2.Head,
) -> None:
    metadata = _metadata(client, HEAD, headers)
    labels = json.loads(metadata.parameters["labels"].string_param)
    assert labels == list(topic_head.labels) and list(metadata.versions) == ["1", "2"]
    scores_spec = next(t for t in metadata.outputs if t.name == "SCORES")
    assert json.loads(scores_spec.parameters["labels"].string_param) == labels
    assert list(scores_spec.shape) == [-1, 6]
    assert {t.name for t in metadata.inputs} == {"TEXT", "EMBEDDING"}
    assert client.is_model_ready(HEAD, headers=headers)

    result = client.infer(HEAD, [_texts("TEXT", TEST_TEXTS)], headers=headers)
    predicted = heads_stub.Predict(
        heads_pb2.PredictRequest(head=HEAD, inputs=[common_pb2.Input(text=t) for t in TEST_TEXTS])
    )
    assert [b.decode() for b in result.as_numpy("LABEL")] == [
        p.label for p in predicted.predictions
    ]
    scores = result.as_numpy("SCORES")
    assert scores.shape == (len(TEST_TEXTS), 6)
    # The reply names the columns too, where tritonclient's own stubs read it.
    assert json.loads(result.get_output("SCORES").parameters["labels"].string_param) == labels
    for row, prediction in zip(scores, predicted.predictions, strict=True):
        by_label = {s.label: s.score for s in prediction.scores}
        assert np.allclose(row, [by_label[label] for label in labels], atol=1e-6)
    assert result.get_response().model_version == "2"


def test_a_head_takes_embeddings_and_returns_only_the_outputs_asked_for(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    embedding_stub: embedding_pb2_grpc.EmbeddingServiceStub,
    topic_head: heads_pb2.Head,
) -> None:
    texts = TEST_TEXTS[:4]
    embedded = vectors(embedding_stub.Embed(text_request(texts)))
    by_text = client.infer(HEAD, [_texts("TEXT", texts)], headers=headers)
    by_vector = client.infer(
        HEAD,
        [_floats("EMBEDDING", embedded)],
        outputs=[triton.InferRequestedOutput("LABEL")],
        headers=headers,
    )
    assert list(by_vector.as_numpy("LABEL")) == list(by_text.as_numpy("LABEL"))
    assert by_vector.as_numpy("SCORES") is None
    assert [o.name for o in by_vector.get_response().outputs] == ["LABEL"]


def test_model_version_selects_an_older_version(
    client: triton.InferenceServerClient, headers: dict[str, str], topic_head: heads_pb2.Head
) -> None:
    first = client.infer(HEAD, [_texts("TEXT", TEST_TEXTS)], model_version="1", headers=headers)
    assert first.get_response().model_version == "1"
    assert first.as_numpy("SCORES").shape == (len(TEST_TEXTS), 2)
    assert {b.decode() for b in first.as_numpy("LABEL")} <= {"cooking", "sports"}
    metadata = _metadata(client, HEAD, headers, "1")
    assert json.loads(metadata.parameters["labels"].string_param) == ["cooking", "sports"]
    missing = _refusal(lambda: client.infer(HEAD, [_texts("TEXT", ["x"])], "7", headers=headers))
    assert missing.status() == "StatusCode.NOT_FOUND"


def test_a_regression_head_returns_value_as_predict_does(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    heads_stub: heads_pb2_grpc.HeadServiceStub,
) -> None:
    texts = [text for text, _ in labelled(topics()["train"])]
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=t), value=float(len(t.split())))
        for t in texts
    ]
    train_to_success(
        heads_stub,
        heads_pb2.TrainHeadRequest(
            head=REGRESSION_HEAD, backbone=BACKBONE, kind="ridge", examples=examples
        ),
    )
    metadata = client.get_model_metadata(REGRESSION_HEAD, headers=headers)
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("VALUE", [-1])]
    values = client.infer(REGRESSION_HEAD, [_texts("TEXT", TEST_TEXTS)], headers=headers)
    predicted = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head=REGRESSION_HEAD, inputs=[common_pb2.Input(text=t) for t in TEST_TEXTS]
        )
    )
    assert np.allclose(
        values.as_numpy("VALUE"), [p.value for p in predicted.predictions], atol=1e-4
    )


def test_a_multi_label_head_returns_each_inputs_labels_as_predict_does(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    heads_stub: heads_pb2_grpc.HeadServiceStub,
) -> None:
    pairs = labelled(topics()["train"])
    examples = [
        heads_pb2.Example(
            input=common_pb2.Input(text=text),
            labels=[topic, "long" if len(text.split()) > 9 else "short"],
        )
        for text, topic in pairs
    ]
    train_to_success(
        heads_stub,
        heads_pb2.TrainHeadRequest(head="oip-tags", backbone=BACKBONE, examples=examples),
    )
    result = client.infer("oip-tags", [_texts("TEXT", TEST_TEXTS)], headers=headers)
    assert [o.name for o in result.get_response().outputs] == ["LABEL", "LABELS", "SCORES"]
    predicted = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="oip-tags", inputs=[common_pb2.Input(text=t) for t in TEST_TEXTS]
        )
    )
    expected = [list(p.labels) for p in predicted.predictions]
    assert any(expected) and [json.loads(item) for item in result.as_numpy("LABELS")] == expected
    assert result.as_numpy("SCORES").shape == (len(TEST_TEXTS), 8)


def test_typed_contents_are_read_as_raw_contents_are(
    server: ServerProcess,
    tenant_key: str,
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    topic_head: heads_pb2.Head,
) -> None:
    """tritonclient always sends raw_input_contents; other clients send typed contents."""
    texts = TEST_TEXTS[:2]
    request = oip_pb2.ModelInferRequest(model_name=HEAD)
    tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([t.encode() for t in texts])
    with grpc.insecure_channel(server.address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=oip_pb2.ModelInferRequest.SerializeToString,
            response_deserializer=oip_pb2.ModelInferResponse.FromString,
        )
        reply = infer(request, metadata=bearer(tenant_key), timeout=60)
    assert [o.name for o in reply.outputs] == ["LABEL", "SCORES"]
    raw = client.infer(HEAD, [_texts("TEXT", texts)], headers=headers)
    assert list(deserialize_bytes_tensor(reply.raw_output_contents[0])) == list(
        raw.as_numpy("LABEL")
    )
    scores = np.frombuffer(reply.raw_output_contents[1], dtype="<f4").reshape(2, 6)
    assert np.array_equal(scores, raw.as_numpy("SCORES"))


def _oversize_embedding() -> list[triton.InferInput]:
    """EMBEDDING whose shape says two rows while its bytes hold one."""
    tensor = _floats("EMBEDDING", np.zeros((1, 384), np.float32))
    tensor.set_shape([2, 384])
    return [tensor]


@pytest.mark.parametrize(
    ("inputs", "names"),
    [
        (lambda: [_texts("WORDS", ["hello"])], ["WORDS"]),
        (lambda: [_floats("TEXT", np.zeros(2))], ["TEXT", "FP32"]),
        (lambda: [_floats("EMBEDDING", np.zeros((1, 10)))], ["EMBEDDING", "[1, 10]"]),
        (lambda: [_texts("TEXT", ["a"] * 65)], ["TEXT", "65 inputs"]),
        (lambda: [_texts("TEXT", [""])], ["TEXT[0]"]),
        (_oversize_embedding, ["EMBEDDING", "1536 bytes"]),
        (lambda: [_texts("TEXT", ["a"]), _texts("TEXT", ["b"])], ["inputs", "2 given"]),
    ],
)
def test_bad_tensors_are_invalid_argument_naming_the_tensor(
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    topic_head: heads_pb2.Head,
    inputs: Callable[[], list[triton.InferInput]],
    names: list[str],
) -> None:
    refused = _refusal(lambda: client.infer(HEAD, inputs(), headers=headers))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT", refused.message()
    assert all(name in refused.message() for name in names), refused.message()


def test_a_bad_shape_for_a_backbone_and_an_unknown_output_are_named(
    client: triton.InferenceServerClient, headers: dict[str, str]
) -> None:
    flat = triton.InferInput("TEXT", [1, 1], "BYTES")
    flat.set_data_from_numpy(np.array([[b"hello"]], dtype=np.object_))
    refused = _refusal(lambda: client.infer(BACKBONE, [flat], headers=headers))
    assert refused.status() == "StatusCode.INVALID_ARGUMENT"
    assert "TEXT" in refused.message() and "[1, 1]" in refused.message()
    unknown = _refusal(
        lambda: client.infer(
            BACKBONE,
            [_texts("TEXT", ["hello"])],
            outputs=[triton.InferRequestedOutput("VECTORS")],
            headers=headers,
        )
    )
    assert unknown.status() == "StatusCode.INVALID_ARGUMENT" and "VECTORS" in unknown.message()


def test_model_rpcs_need_a_key_and_see_only_the_callers_heads(
    server: ServerProcess,
    client: triton.InferenceServerClient,
    headers: dict[str, str],
    topic_head: heads_pb2.Head,
) -> None:
    texts = [_texts("TEXT", ["hello"])]
    for call in (
        lambda: client.infer(HEAD, texts),
        lambda: client.infer(BACKBONE, texts),
        lambda: client.get_model_metadata(HEAD),
        lambda: client.is_model_ready(BACKBONE),
        lambda: client.infer(HEAD, texts, headers={"authorization": "Bearer not-a-key"}),
    ):
        assert _refusal(call).status() == "StatusCode.UNAUTHENTICATED"
    other = {"authorization": f"Bearer {server.create_tenant_key('oip-other')}"}
    assert client.infer(BACKBONE, texts, headers=other).as_numpy("EMBEDDING").shape == (1, 384)
    for call in (
        lambda: client.infer(HEAD, texts, headers=other),
        lambda: client.get_model_metadata(HEAD, headers=other),
        lambda: client.is_model_ready(HEAD, headers=other),
        lambda: client.infer("no-such-model", texts, headers=headers),
        lambda: client.get_model_metadata("no such model!", headers=headers),
    ):
        refused = _refusal(call)
        assert refused.status() == "StatusCode.NOT_FOUND", refused.message()
    assert "oip-topics" in _refusal(lambda: client.infer(HEAD, texts, headers=other)).message()
