"""Server and model metadata of the Open Inference Protocol (pb), from the model's signature."""

from __future__ import annotations

from importlib import metadata

from service.api.oip.models import BACKBONE_VERSION, BackboneModel, Model
from service.api.oip.signatures import TensorSpec, labels_json
from transferd.oip import grpc_predict_v2_pb2 as pb

SERVER_NAME = "transferd"
BACKBONE_PLATFORM = "transferd_backbone"
HEAD_PLATFORM = "transferd_head"


def server_metadata() -> pb.ServerMetadataResponse:
    # No protocol extensions (Triton's statistics, repository, shared memory…) are served.
    return pb.ServerMetadataResponse(name=SERVER_NAME, version=_version(), extensions=[])


def _version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def model_metadata(model: Model, versions: list[str]) -> pb.ModelMetadataResponse:
    """The model's tensors, with what more there is to know as parameters (MLServer's
    extension of the protocol): a backbone's card, a head's task and labels."""
    signature = model.signature
    if isinstance(model, BackboneModel):
        card = model.served.card
        platform = BACKBONE_PLATFORM
        parameters = {
            "modality": _text(card.modality),
            "dim": pb.InferParameter(int64_param=card.dim),
            "fingerprint": _text(card.fingerprint),
            "normalized": pb.InferParameter(bool_param=card.normalized),
            "runtime": _text(model.served.runtime.kind),
            "version": _text(BACKBONE_VERSION),
        }
    else:
        head = model.card
        platform = HEAD_PLATFORM
        parameters = {
            "task": _text(str(head.task)),
            "labels": _text(labels_json(head.labels)),
            "backbone": _text(head.backbone),
            "kind": _text(head.kind),
            # The version described (the latest, when the request named none).
            "version": _text(str(head.version)),
        }
    return pb.ModelMetadataResponse(
        name=model.name,
        versions=versions,
        platform=platform,
        inputs=[_tensor(spec) for spec in signature.inputs],
        outputs=[_tensor(spec) for spec in signature.outputs],
        parameters=parameters,
    )


def _text(value: str) -> pb.InferParameter:
    return pb.InferParameter(string_param=value)


def _tensor(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name,
        datatype=spec.datatype,
        shape=spec.shape,
        parameters={key: _text(value) for key, value in spec.parameters.items()},
    )
