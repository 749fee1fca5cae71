"""GRPCInferenceService: converts and delegates, like the transferd.v1 servicers.

ServerLive, ServerReady and ServerMetadata need no key (probes and load balancers call them, as
they call gRPC health; `service.api.auth.OPEN_SERVICES`); the model RPCs take the caller's API
key, and a model is a backbone or one of the key's tenant's heads (`models`). ModelInfer embeds
through the Embedder (backbones) or predicts through the Predictor (heads): the admission, fair
batching, embedding cache, deadlines, metrics and error mapping of Embed and Predict.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import grpc

from service.api.offload import off_loop_if
from service.api.oip.metadata import model_metadata, server_metadata
from service.api.oip.models import BACKBONE_VERSION, BackboneModel, HeadModel, Models
from service.api.oip.outputs import embedding_outputs, head_outputs
from service.api.oip.tensors import decode_input, infer_response, requested_outputs
from service.backbones.embedder import Embedder
from service.backbones.fused import head_backbones
from service.errors import InvalidArgument
from service.predictor import Predictor
from service.reply_size import MAX_REQUEST_ID_BYTES, check_tensor_reply
from service.store.registry import HeadRegistry
from service.tenancy.principal import current_tenant
from transferd.oip import grpc_predict_v2_pb2 as pb
from transferd.oip import grpc_predict_v2_pb2_grpc as pb_grpc

# Above this many inputs, decoding the tensor and building the outputs run off the event loop
# (as Embed and Predict convert more than 64 inputs off it).
OFF_LOOP_INPUTS = 64
OFF_LOOP_REQUEST_BYTES = 64 * 1024


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol v2 over the served backbones and the callers' heads.

    Args:
        is_serving: Whether the server serves now: what gRPC health says for the server.
    """

    def __init__(
        self,
        embedder: Embedder,
        registry: HeadRegistry,
        predictor: Predictor,
        executor: Executor,
        is_serving: Callable[[], bool],
    ) -> None:
        self._embedder = embedder
        self._predictor = predictor
        self._models = Models(embedder, registry)
        self._executor = executor
        self._is_serving = is_serving

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        # Answered from the event loop: a wedged loop answers nothing.
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._is_serving())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return server_metadata()

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        model = await self._models.find(current_tenant(), request.name, request.version)
        return pb.ModelReadyResponse(ready=self._is_serving() and model.is_ready())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        tenant = current_tenant()
        model = await self._models.find(tenant, request.name, request.version)
        return model_metadata(model, await self._models.versions(tenant, model))

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        tenant = current_tenant()
        if len(request.id.encode()) > MAX_REQUEST_ID_BYTES:
            raise InvalidArgument("id", f"is longer than {MAX_REQUEST_ID_BYTES} bytes")
        model = await self._models.find(
            tenant, request.model_name, request.model_version, field="model_"
        )
        outputs = requested_outputs(request, model.signature, model.name)
        if isinstance(model, HeadModel):
            # Before decoding: a head whose backbone cannot serve it is refused as in Predict.
            head_backbones(self._embedder, model.card)
        large = request.ByteSize() > OFF_LOOP_REQUEST_BYTES
        name, inputs = await off_loop_if(
            large,
            self._executor,
            decode_input,
            request,
            model.signature,
            model.name,
            self._embedder.limits.max_inputs,
        )
        if isinstance(model, BackboneModel):
            result = await self._embedder.embed(model.name, inputs, field=name, tenant=tenant)
            return infer_response(
                model.name, BACKBONE_VERSION, request.id, embedding_outputs(result.vectors)
            )
        check_tensor_reply(model.card, len(inputs), self._predictor.max_reply_bytes)
        predicted = await self._predictor.predict_with(
            model.card, model.asked_version, inputs, tenant, field=name
        )
        tensors = await off_loop_if(
            len(inputs) > OFF_LOOP_INPUTS,
            self._executor,
            head_outputs,
            model.card,
            predicted.predictions,
            outputs,
        )
        return infer_response(model.name, str(predicted.version), request.id, tensors)
