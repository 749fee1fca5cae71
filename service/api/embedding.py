"""EmbeddingService: converts and delegates to the Embedder.

Tenants only: the admin key manages tenants and keys and has no share of the backbones.
Large conversions (many inputs in, a matrix of floats out) run off the event loop.
"""

from __future__ import annotations

from concurrent.futures import Executor

import grpc

from service.api.convert import backbone_to_pb, embed_result_to_pb, inputs_from_pb
from service.api.offload import off_loop_if
from service.backbones.embedder import Embedder
from service.tenancy.principal import current_tenant
from transferd.v1 import embedding_pb2, embedding_pb2_grpc


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, embedder: Embedder, executor: Executor) -> None:
        self._embedder = embedder
        self._executor = executor

    async def ListBackbones(
        self, request: embedding_pb2.ListBackbonesRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.ListBackbonesResponse:
        current_tenant()
        return embedding_pb2.ListBackbonesResponse(
            backbones=[
                backbone_to_pb(b, self._embedder.relative_cost([b.card.name]))
                for b in self._embedder.served()
            ]
        )

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        tenant = current_tenant()
        many = len(request.inputs) > 64
        inputs = await off_loop_if(many, self._executor, inputs_from_pb, request.inputs)
        result = await self._embedder.embed(request.backbone, inputs, tenant=tenant)
        return await off_loop_if(many, self._executor, embed_result_to_pb, result)
