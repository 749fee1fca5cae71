"""EmbeddingService: converts and delegates to the Embedder."""

from __future__ import annotations

import grpc

from service.api.convert import backbone_to_pb, embed_result_to_pb, inputs_from_pb
from service.backbones.embedder import Embedder
from transferd.v1 import embedding_pb2, embedding_pb2_grpc


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    async def ListBackbones(
        self, request: embedding_pb2.ListBackbonesRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.ListBackbonesResponse:
        return embedding_pb2.ListBackbonesResponse(
            backbones=[backbone_to_pb(b) for b in self._embedder.served()]
        )

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        result = await self._embedder.embed(request.backbone, inputs_from_pb(request.inputs))
        return embed_result_to_pb(result)
