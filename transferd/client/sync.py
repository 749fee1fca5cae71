"""`Client`: transferd over gRPC, blocking.

from transferd.client import Client, Example

with Client("localhost:50051", api_key=KEY) as client:
    vectors = client.embed("all-minilm-l6-v2", texts=["a text", "another"])
    job = client.train_head("topics", [Example(text="goal!", label="sports"), ...])
    job.wait(on_progress=lambda status: print(status.stage, status.progress))
    [prediction] = client.predict("topics", texts=["a late goal"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from transferd.client import channel as channels
from transferd.client import messages
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
DEFAULT_TIMEOUT_S = 60.0
TRAINING_TIMEOUT_S = 3600.0  # how long `Job.wait` follows a job by default


class Job:
    """A training job: its last known status, and `wait` to follow it to its end."""

    def __init__(self, client: Client, status: JobStatus) -> None:
        self._client = client
        self.status = status

    @property
    def job_id(self) -> str:
        return self.status.job_id

    def refresh(self) -> JobStatus:
        self.status = self._client.job(self.job_id).status
        return self.status

    def wait(
        self,
        on_progress: Callable[[JobStatus], None] | None = None,
        timeout: float = TRAINING_TIMEOUT_S,
    ) -> JobStatus:
        """Follows the job (WatchJob) until it ends; `on_progress` sees every update.

        Returns the final status, whatever it is: check `.state` (SUCCEEDED, FAILED, CANCELLED).
        """
        for status in self._client._watch(self.job_id, timeout):
            self.status = status
            if on_progress is not None:
                on_progress(status)
        return self.status

    def cancel(self) -> JobStatus:
        self.status = self._client._cancel(self.job_id)
        return self.status


class Client:
    """transferd's API: embeddings, heads, and (with the admin key) tenants and keys.

    Args:
        url: host:port of the gRPC server.
        api_key: A tenant's key (or the admin key for `create_tenant` and the key calls).
        tls: False: plaintext (localhost); True: TLS with the system's roots; or channel
            credentials of your own (a private CA, a client certificate).
        timeout: Deadline of each call, in seconds (WatchJob: `Job.wait`'s own).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        credentials = channels.credentials(api_key, tls)
        self._channel = (
            grpc.insecure_channel(url, options=channels.options())
            if credentials is None
            else grpc.secure_channel(url, credentials, options=channels.options())
        )
        self._metadata = channels.metadata(api_key, tls)
        self._timeout = timeout
        self._embedding = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self._heads = heads_pb2_grpc.HeadServiceStub(self._channel)
        self._tenants = tenants_pb2_grpc.TenantServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise TransferdError.of(error) from None

    # Embeddings.

    def backbones(self) -> list[embedding_pb2.Backbone]:
        """The backbones this server serves (name, modality, dim, fingerprint, ...)."""
        reply = self._call(self._embedding.ListBackbones, embedding_pb2.ListBackbonesRequest())
        return list(reply.backbones)

    def embed(
        self,
        backbone: str,
        texts: Sequence[str] | None = None,
        images: Sequence[bytes] | None = None,
    ) -> np.ndarray:
        """Embeddings of texts, or of encoded images (PNG or JPEG bytes): float32 (n, dim)."""
        request = messages.embed_request(backbone, messages.inputs(texts=texts, images=images))
        return messages.vectors(self._call(self._embedding.Embed, request))

    # Heads.

    def train_head(
        self,
        name: str,
        examples: Sequence[Example],
        backbone: str = "all-minilm-l6-v2",
        kind: str = "",
        params: dict[str, str] | None = None,
        validation_fraction: float | None = None,
    ) -> Job:
        """Starts training `name` (a new version of it) and returns its queued job at once."""
        request = messages.train_request(
            name, examples, backbone, kind, params, validation_fraction
        )
        return Job(self, JobStatus.of(self._call(self._heads.TrainHead, request)))

    def job(self, job_id: str) -> Job:
        reply = self._call(self._heads.GetJob, heads_pb2.GetJobRequest(job_id=job_id))
        return Job(self, JobStatus.of(reply))

    def _watch(self, job_id: str, timeout: float) -> Iterator[JobStatus]:
        stream = self._heads.WatchJob(
            heads_pb2.WatchJobRequest(job_id=job_id), timeout=timeout, metadata=self._metadata
        )
        try:
            for update in stream:
                yield JobStatus.of(update)
        except grpc.RpcError as error:
            raise TransferdError.of(error) from None

    def _cancel(self, job_id: str) -> JobStatus:
        return JobStatus.of(
            self._call(self._heads.CancelJob, heads_pb2.CancelJobRequest(job_id=job_id))
        )

    def predict(
        self,
        head: str,
        texts: Sequence[str] | None = None,
        images: Sequence[bytes] | None = None,
        embeddings: Sequence[Sequence[float]] | np.ndarray | None = None,
        top_k: int = 0,
        version: int = 0,
    ) -> list[Prediction]:
        """One prediction per input, in order, with the head's latest version (or `version`)."""
        request = messages.predict_request(head, version, top_k, texts, images, embeddings)
        return messages.predictions(self._call(self._heads.Predict, request))

    def heads(self, all_versions: bool = False) -> list[HeadInfo]:
        request = heads_pb2.ListHeadsRequest(include_all_versions=all_versions)
        return [HeadInfo.of(h) for h in self._call(self._heads.ListHeads, request).heads]

    def head(self, name: str, version: int = 0) -> HeadInfo:
        request = heads_pb2.GetHeadRequest(head=name, version=version)
        return HeadInfo.of(self._call(self._heads.GetHead, request))

    def delete_head(self, name: str, version: int = 0) -> None:
        """Deletes one version, or every version with `version` 0."""
        self._call(self._heads.DeleteHead, heads_pb2.DeleteHeadRequest(head=name, version=version))

    # Tenants and keys (the admin key).

    def create_tenant(self, tenant: str) -> str:
        request = tenants_pb2.CreateTenantRequest(tenant=tenant)
        return self._call(self._tenants.CreateTenant, request).tenant

    def list_tenants(self) -> list[TenantInfo]:
        """Every tenant, by name (admin key)."""
        reply = self._call(self._tenants.ListTenants, tenants_pb2.ListTenantsRequest())
        return [TenantInfo(t.tenant, moment_of(t, "created_at")) for t in reply.tenants]

    def delete_tenant(self, tenant: str) -> TenantDeletion:
        """Deletes a tenant: its keys, jobs and heads, on every replica (admin key)."""
        request = tenants_pb2.DeleteTenantRequest(tenant=tenant)
        reply = self._call(self._tenants.DeleteTenant, request)
        return TenantDeletion(reply.keys_revoked, reply.jobs_stopped, reply.head_versions_deleted)

    def create_api_key(self, tenant: str, ttl_seconds: int = 0) -> ApiKey:
        """A new key of `tenant`, expiring after `ttl_seconds` (0: never; admin key)."""
        request = tenants_pb2.CreateApiKeyRequest(tenant=tenant, ttl_seconds=ttl_seconds)
        return ApiKey.of(self._call(self._tenants.CreateApiKey, request))

    def list_api_keys(self, tenant: str, include_revoked: bool = False) -> list[KeyInfo]:
        """The tenant's keys, oldest first, without their secrets (admin key)."""
        request = tenants_pb2.ListApiKeysRequest(tenant=tenant, include_revoked=include_revoked)
        reply = self._call(self._tenants.ListApiKeys, request)
        return [KeyInfo.of(key) for key in reply.keys]

    def revoke_api_key(self, key_id: str) -> None:
        self._call(self._tenants.RevokeApiKey, tenants_pb2.RevokeApiKeyRequest(key_id=key_id))
