"""`AsyncClient`: the same methods as `Client`, awaitable (grpc.aio).

async with AsyncClient("localhost:50051", api_key=KEY) as client:
    vectors = await client.embed("all-minilm-l6-v2", texts=["a text"])
    job = await client.train_head("topics", examples)
    status = await job.wait()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from transferd.client import channel as channels
from transferd.client import messages
from transferd.client.sync import DEFAULT_TIMEOUT_S, TRAINING_TIMEOUT_S
from transferd.client.types import (
    ApiKey,
    Example,
    HeadInfo,
    JobStatus,
    KeyInfo,
    Prediction,
    TenantDeletion,
    TenantInfo,
    TransferdError,
    moment_of,
)
from transferd.v1 import (
    embedding_pb2,
    embedding_pb2_grpc,
    heads_pb2,
    heads_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)

T = TypeVar("T")


class AsyncJob:
    """A training job: its last known status, and `wait` to follow it to its end."""

    def __init__(self, client: AsyncClient, status: JobStatus) -> None:
        self._client = client
        self.status = status

    @property
    def job_id(self) -> str:
        return self.status.job_id

    async def refresh(self) -> JobStatus:
        self.status = (await self._client.job(self.job_id)).status
        return self.status

    async def wait(
        self,
        on_progress: Callable[[JobStatus], None] | None = None,
        timeout: float = TRAINING_TIMEOUT_S,
    ) -> JobStatus:
        """Follows the job (WatchJob) until it ends; `on_progress` sees every update.

        Returns the final status, whatever it is: check `.state` (SUCCEEDED, FAILED, CANCELLED).
        """
        async for status in self._client._watch(self.job_id, timeout):
            self.status = status
            if on_progress is not None:
                on_progress(status)
        return self.status

    async def cancel(self) -> JobStatus:
        self.status = await self._client._cancel(self.job_id)
        return self.status


class AsyncClient:
    """transferd's API, awaitable; see `Client` for the arguments."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        credentials = channels.credentials(api_key, tls)
        self._channel = (
            grpc.aio.insecure_channel(url, options=channels.options())
            if credentials is None
            else grpc.aio.secure_channel(url, credentials, options=channels.options())
        )
        self._metadata = channels.metadata(api_key, tls)
        self._timeout = timeout
        self._embedding = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self._heads = heads_pb2_grpc.HeadServiceStub(self._channel)
        self._tenants = tenants_pb2_grpc.TenantServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, timeout: float | None = None
    ) -> T:
        try:
            return await method(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise TransferdError.of(error) from None

    async def backbones(self) -> list[embedding_pb2.Backbone]:
        request = embedding_pb2.ListBackbonesRequest()
        return list((await self._call(self._embedding.ListBackbones, request)).backbones)

    async def embed(
        self,
        backbone: str,
        texts: Sequence[str] | None = None,
        images: Sequence[bytes] | None = None,
    ) -> np.ndarray:
        request = messages.embed_request(backbone, messages.inputs(texts=texts, images=images))
        return messages.vectors(await self._call(self._embedding.Embed, request))

    async def train_head(
        self,
        name: str,
        examples: Sequence[Example],
        backbone: str = "all-minilm-l6-v2",
        kind: str = "",
        params: dict[str, str] | None = None,
        validation_fraction: float | None = None,
    ) -> AsyncJob:
        request = messages.train_request(
            name, examples, backbone, kind, params, validation_fraction
        )
        return AsyncJob(self, JobStatus.of(await self._call(self._heads.TrainHead, request)))

    async def job(self, job_id: str) -> AsyncJob:
        reply = await self._call(self._heads.GetJob, heads_pb2.GetJobRequest(job_id=job_id))
        return AsyncJob(self, JobStatus.of(reply))

    async def _watch(self, job_id: str, timeout: float) -> AsyncIterator[JobStatus]:
        stream = self._heads.WatchJob(
            heads_pb2.WatchJobRequest(job_id=job_id), timeout=timeout, metadata=self._metadata
        )
        try:
            async for update in stream:
                yield JobStatus.of(update)
        except grpc.RpcError as error:
            raise TransferdError.of(error) from None

    async def _cancel(self, job_id: str) -> JobStatus:
        request = heads_pb2.CancelJobRequest(job_id=job_id)
        return JobStatus.of(await self._call(self._heads.CancelJob, request))

    async def predict(
        self,
        head: str,
        texts: Sequence[str] | None = None,
        images: Sequence[bytes] | None = None,
        embeddings: Sequence[Sequence[float]] | np.ndarray | None = None,
        top_k: int = 0,
        version: int = 0,
    ) -> list[Prediction]:
        request = messages.predict_request(head, version, top_k, texts, images, embeddings)
        return messages.predictions(await self._call(self._heads.Predict, request))

    async def heads(self, all_versions: bool = False) -> list[HeadInfo]:
        request = heads_pb2.ListHeadsRequest(include_all_versions=all_versions)
        return [HeadInfo.of(h) for h in (await self._call(self._heads.ListHeads, request)).heads]

    async def head(self, name: str, version: int = 0) -> HeadInfo:
        request = heads_pb2.GetHeadRequest(head=name, version=version)
        return HeadInfo.of(await self._call(self._heads.GetHead, request))

    async def delete_head(self, name: str, version: int = 0) -> None:
        request = heads_pb2.DeleteHeadRequest(head=name, version=version)
        await self._call(self._heads.DeleteHead, request)

    async def create_tenant(self, tenant: str) -> str:
        request = tenants_pb2.CreateTenantRequest(tenant=tenant)
        return (await self._call(self._tenants.CreateTenant, request)).tenant

    async def list_tenants(self) -> list[TenantInfo]:
        """Every tenant, by name (admin key)."""
        reply = await self._call(self._tenants.ListTenants, tenants_pb2.ListTenantsRequest())
        return [TenantInfo(t.tenant, moment_of(t, "created_at")) for t in reply.tenants]

    async def delete_tenant(self, tenant: str) -> TenantDeletion:
        """Deletes a tenant: its keys, jobs and heads, on every replica (admin key)."""
        request = tenants_pb2.DeleteTenantRequest(tenant=tenant)
        reply = await self._call(self._tenants.DeleteTenant, request)
        return TenantDeletion(reply.keys_revoked, reply.jobs_stopped, reply.head_versions_deleted)

    async def create_api_key(self, tenant: str, ttl_seconds: int = 0) -> ApiKey:
        """A new key of `tenant`, expiring after `ttl_seconds` (0: never; admin key)."""
        request = tenants_pb2.CreateApiKeyRequest(tenant=tenant, ttl_seconds=ttl_seconds)
        return ApiKey.of(await self._call(self._tenants.CreateApiKey, request))

    async def list_api_keys(self, tenant: str, include_revoked: bool = False) -> list[KeyInfo]:
        """The tenant's keys, oldest first, without their secrets (admin key)."""
        request = tenants_pb2.ListApiKeysRequest(tenant=tenant, include_revoked=include_revoked)
        reply = await self._call(self._tenants.ListApiKeys, request)
        return [KeyInfo.of(key) for key in reply.keys]

    async def revoke_api_key(self, key_id: str) -> None:
        request = tenants_pb2.RevokeApiKeyRequest(key_id=key_id)
        await self._call(self._tenants.RevokeApiKey, request)
