"""What each RPC may receive: a byte limit sized to what the method allows, and element counts.

Checked on the raw message, after authentication and before anything is decoded (see
`service.api.decoding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor

from service.backbones.card import BackboneCard
from service.config import Settings
from transferd.oip import grpc_predict_v2_pb2 as oip_pb2
from transferd.v1 import embedding_pb2, heads_pb2

# Requests without bulk data (names, ids, versions) are tiny; 64 KiB is generous and keeps a
# 1 MB job_id from ever being decoded.
SMALL_REQUEST_BYTES = 64 * 1024
# Room for an element's framing and its small fields (tags, lengths, a label) beyond its data.
ELEMENT_OVERHEAD_BYTES = 1024
# A legitimate message has a handful of singular fields besides its repeated ones.
MAX_OTHER_FIELDS = 64
MAX_PARAMS = 64
# Multi-label examples carry a few labels each; all examples of a request together may carry this
# many on average (each label decodes to a Python string: the bytes limit alone allows ~30
# million one-character labels, gigabytes once decoded).
LABELS_PER_EXAMPLE_IN_ALL = 64
# Above this size a request is decoded and converted off the event loop.
OFF_LOOP_BYTES = 64 * 1024


@dataclass(frozen=True)
class NestedLimit:
    """A repeated field inside the elements of a repeated message field (labels of examples).

    Attributes:
        outer: (name, number) of the repeated message field, e.g. ("examples", 4).
        inner: (name, number) of the repeated field inside it, e.g. ("labels", 3).
        per_element: Most inner elements in one outer element.
        in_all: Most inner elements in the whole request.
    """

    outer: tuple[str, int]
    inner: tuple[str, int]
    per_element: int
    in_all: int


@dataclass(frozen=True)
class PathLimit:
    """A repeated field deeper in the message, counted over the whole message.

    Attributes:
        name: How errors name it, e.g. "inputs[].contents.bytes_contents".
        numbers: Field numbers from the top down to the counted field, e.g. (5, 5, 8).
        limit: Most elements in the whole request.
        packed: The field holds varints (e.g. int64 shape): a packed occurrence counts each.
    """

    name: str
    numbers: tuple[int, ...]
    limit: int
    packed: bool = False


@dataclass(frozen=True)
class MethodLimits:
    """What one RPC may receive.

    Attributes:
        max_bytes: The largest serialized request.
        repeated: Field number → (field name, most elements), counted on the raw message.
        nested: A repeated field inside repeated messages, also counted on the raw message.
        paths: Repeated fields deeper in the message (Open Inference Protocol tensors), also
            counted on the raw message.
    """

    max_bytes: int
    repeated: dict[int, tuple[str, int]] = field(default_factory=dict)
    nested: NestedLimit | None = None
    paths: tuple[PathLimit, ...] = ()

    @property
    def counts(self) -> dict[int, int]:
        return {number: limit for number, (_name, limit) in self.repeated.items()}


SMALL = MethodLimits(SMALL_REQUEST_BYTES)


def _field(descriptor: Descriptor, name: str, limit: int) -> dict[int, tuple[str, int]]:
    return {descriptor.fields_by_name[name].number: (name, limit)}


def largest_input_bytes(settings: Settings, cards: list[BackboneCard]) -> int:
    """The largest single input the served backbones accept: a text, an encoded image, or a
    precomputed embedding (Predict) of the widest backbone (float32 values, packed)."""
    sizes = [4 * card.dim + 16 for card in cards]
    if any(card.modality == "text" for card in cards):
        sizes.append(settings.max_text_bytes)
    if any(card.modality == "image" for card in cards):
        sizes.append(settings.max_image_bytes)
    return max(sizes, default=settings.max_text_bytes)


def method_limits(settings: Settings, max_item_bytes: int) -> dict[str, MethodLimits]:
    """The limits of the methods that carry bulk data; every other method gets `SMALL`.

    Args:
        settings: The server's settings (counts and the overall byte cap).
        max_item_bytes: The largest single input any served backbone or head accepts (a text,
            an encoded image, or a precomputed embedding).
    """
    per_item = max_item_bytes + ELEMENT_OVERHEAD_BYTES
    cap = settings.max_request_bytes
    inputs = MethodLimits(
        min(cap, settings.max_inputs_per_request * per_item),
        _field(embedding_pb2.EmbedRequest.DESCRIPTOR, "inputs", settings.max_inputs_per_request),
    )
    predict = MethodLimits(
        min(cap, settings.max_inputs_per_request * per_item),
        _field(heads_pb2.PredictRequest.DESCRIPTOR, "inputs", settings.max_inputs_per_request),
    )
    train = heads_pb2.TrainHeadRequest.DESCRIPTOR
    training = MethodLimits(
        min(cap, settings.max_examples_per_job * per_item),
        {
            **_field(train, "examples", settings.max_examples_per_job),
            **_field(train, "params", MAX_PARAMS),
        },
        NestedLimit(
            ("examples", train.fields_by_name["examples"].number),
            ("labels", heads_pb2.Example.DESCRIPTOR.fields_by_name["labels"].number),
            per_element=settings.max_labels_per_head,
            in_all=LABELS_PER_EXAMPLE_IN_ALL * settings.max_examples_per_job,
        ),
    )
    return {
        "/transferd.v1.EmbeddingService/Embed": inputs,
        "/transferd.v1.HeadService/Predict": predict,
        "/transferd.v1.HeadService/TrainHead": training,
        MODEL_INFER: _model_infer(settings, per_item),
    }


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# Tensors of one ModelInfer request: one input is served (the error then says so), and a few
# requested outputs; more than this is refused on the wire.
MAX_TENSORS = 8
# Dimensions of all the tensors of one request together (ours have one or two each).
MAX_SHAPE_DIMS = 4 * MAX_TENSORS


def _model_infer(settings: Settings, per_item: int) -> MethodLimits:
    """Open Inference Protocol: the same byte limit as Predict (an input tensor holds up to
    max_inputs_per_request texts, images or embeddings); tensors, their dimensions, parameters
    and typed BYTES elements counted on the wire, since each decodes to a Python object."""
    infer = oip_pb2.ModelInferRequest.DESCRIPTOR
    tensor = oip_pb2.ModelInferRequest.InferInputTensor.DESCRIPTOR
    requested = oip_pb2.ModelInferRequest.InferRequestedOutputTensor.DESCRIPTOR
    contents = oip_pb2.InferTensorContents.DESCRIPTOR
    inputs = infer.fields_by_name["inputs"].number
    outputs = infer.fields_by_name["outputs"].number
    return MethodLimits(
        min(settings.max_request_bytes, settings.max_inputs_per_request * per_item),
        {
            **_field(infer, "inputs", MAX_TENSORS),
            **_field(infer, "outputs", MAX_TENSORS),
            **_field(infer, "raw_input_contents", MAX_TENSORS),
            **_field(infer, "parameters", MAX_PARAMS),
        },
        paths=(
            PathLimit(
                "inputs[].contents.bytes_contents",
                (
                    inputs,
                    tensor.fields_by_name["contents"].number,
                    contents.fields_by_name["bytes_contents"].number,
                ),
                settings.max_inputs_per_request,
            ),
            PathLimit(
                "inputs[].shape",
                (inputs, tensor.fields_by_name["shape"].number),
                MAX_SHAPE_DIMS,
                packed=True,
            ),
            PathLimit(
                "inputs[].parameters",
                (inputs, tensor.fields_by_name["parameters"].number),
                MAX_PARAMS,
            ),
            PathLimit(
                "outputs[].parameters",
                (outputs, requested.fields_by_name["parameters"].number),
                MAX_PARAMS,
            ),
        ),
    )
