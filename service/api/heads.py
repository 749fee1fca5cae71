"""HeadService: converts and delegates; the tenant always comes from the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from heads import DEFAULT_VALIDATION_FRACTION, HeadCard
from service.api.convert import inputs_from_pb
from service.api.convert_heads import (
    backbone_names,
    head_to_pb,
    job_to_pb,
    predict_result_to_pb,
    target_from_pb,
)
from service.api.offload import off_loop_if
from service.backbones.embedder import Embedder
from service.jobs.manager import JobManager
from service.jobs.model import TrainingRequest
from service.jobs.validation import validate_training_request
from service.predictor import Predictor
from service.store.registry import HeadRegistry
from service.tenancy.principal import current_tenant
from transferd.v1 import heads_pb2, heads_pb2_grpc


class HeadServicer(heads_pb2_grpc.HeadServiceServicer):
    def __init__(
        self,
        embedder: Embedder,
        jobs: JobManager,
        registry: HeadRegistry,
        predictor: Predictor,
        executor: Executor,
    ) -> None:
        self._embedder = embedder
        self._jobs = jobs
        self._registry = registry
        self._predictor = predictor
        self._executor = executor  # large conversions, off the event loop

    async def TrainHead(
        self, request: heads_pb2.TrainHeadRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.Job:
        tenant = current_tenant()
        # Up to max_examples_per_job examples: converted and validated off the event loop.
        training = await off_loop_if(True, self._executor, self._training_request, request)
        return job_to_pb(await self._jobs.submit(tenant, training))

    def _head(self, card: HeadCard) -> heads_pb2.Head:
        """A head as the API shows it, with what its inputs cost to embed on this server."""
        return head_to_pb(card, self._embedder.relative_cost(backbone_names(card)))

    def _training_request(self, request: heads_pb2.TrainHeadRequest) -> TrainingRequest:
        fraction = (
            request.validation_fraction
            if request.HasField("validation_fraction")
            else DEFAULT_VALIDATION_FRACTION
        )
        return validate_training_request(
            self._embedder,
            head=request.head,
            backbone=request.backbone,
            kind=request.kind,
            inputs=inputs_from_pb(e.input for e in request.examples),
            targets=[target_from_pb(e) for e in request.examples],
            params=dict(request.params),
            validation_fraction=fraction,
            limits=self._jobs.training_limits,
        )

    async def GetJob(
        self, request: heads_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.Job:
        return job_to_pb(await self._jobs.get(current_tenant(), request.job_id))

    async def WatchJob(
        self, request: heads_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[heads_pb2.Job]:
        async for job in self._jobs.watch(current_tenant(), request.job_id):
            yield job_to_pb(job)

    async def CancelJob(
        self, request: heads_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.Job:
        return job_to_pb(await self._jobs.cancel(current_tenant(), request.job_id))

    async def ListHeads(
        self, request: heads_pb2.ListHeadsRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.ListHeadsResponse:
        cards = await self._registry.list(current_tenant(), request.include_all_versions)
        return heads_pb2.ListHeadsResponse(heads=[self._head(c) for c in cards])

    async def GetHead(
        self, request: heads_pb2.GetHeadRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.Head:
        return self._head(await self._registry.get(current_tenant(), request.head, request.version))

    async def DeleteHead(
        self, request: heads_pb2.DeleteHeadRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.DeleteHeadResponse:
        await self._registry.delete(current_tenant(), request.head, request.version)
        return heads_pb2.DeleteHeadResponse()

    async def Predict(
        self, request: heads_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> heads_pb2.PredictResponse:
        tenant = current_tenant()
        many = len(request.inputs) > 64
        inputs = await off_loop_if(many, self._executor, inputs_from_pb, request.inputs)
        result = await self._predictor.predict(
            tenant, request.head, request.version, inputs, request.top_k
        )
        # A reply may hold inputs × labels scores: built off the event loop.
        return await off_loop_if(True, self._executor, predict_result_to_pb, result)
