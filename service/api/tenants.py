"""TenantService: admin only (every call is audited by the interceptor)."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from service.api.convert_heads import timestamp_pb
from service.tenancy.deletion import TenantRemover
from service.tenancy.directory import KeyInfo, TenantDirectory
from service.tenancy.principal import require_admin
from transferd.v1 import tenants_pb2, tenants_pb2_grpc


def _timestamp(moment: datetime | None) -> Timestamp | None:
    """Unset (None) where there is no moment: no expiry, never used, not revoked."""
    return timestamp_pb(moment) if moment is not None else None


def _key_pb(key: KeyInfo) -> tenants_pb2.ApiKeyInfo:
    return tenants_pb2.ApiKeyInfo(
        key_id=key.key_id, tenant=key.tenant, created_at=_timestamp(key.created_at),
        expires_at=_timestamp(key.expires_at), last_used_at=_timestamp(key.last_used_at),
        revoked_at=_timestamp(key.revoked_at), expired=key.expired,
    )  # fmt: skip


class TenantServicer(tenants_pb2_grpc.TenantServiceServicer):
    def __init__(self, directory: TenantDirectory, remover: TenantRemover) -> None:
        self._directory = directory
        self._remover = remover

    async def CreateTenant(
        self, request: tenants_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.Tenant:
        require_admin()
        name = await self._directory.create_tenant(request.tenant)
        return tenants_pb2.Tenant(tenant=name)

    async def ListTenants(
        self, request: tenants_pb2.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.ListTenantsResponse:
        require_admin()
        tenants = await self._directory.list_tenants()
        return tenants_pb2.ListTenantsResponse(
            tenants=[
                tenants_pb2.Tenant(tenant=t.name, created_at=_timestamp(t.created_at))
                for t in tenants
            ]
        )

    async def DeleteTenant(
        self, request: tenants_pb2.DeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.DeleteTenantResponse:
        require_admin()
        deleted = await self._remover.delete(request.tenant)
        return tenants_pb2.DeleteTenantResponse(
            keys_revoked=len(deleted.key_ids),
            jobs_stopped=deleted.active_jobs,
            head_versions_deleted=deleted.head_versions,
        )

    async def CreateApiKey(
        self, request: tenants_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.ApiKey:
        require_admin()
        issued = await self._directory.create_key(request.tenant, request.ttl_seconds)
        return tenants_pb2.ApiKey(
            key_id=issued.key_id, tenant=issued.tenant, secret=issued.secret,
            created_at=_timestamp(issued.created_at), expires_at=_timestamp(issued.expires_at),
        )  # fmt: skip

    async def RevokeApiKey(
        self, request: tenants_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.RevokeApiKeyResponse:
        require_admin()
        await self._directory.revoke_key(request.key_id)
        return tenants_pb2.RevokeApiKeyResponse()

    async def ListApiKeys(
        self, request: tenants_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.ListApiKeysResponse:
        require_admin()
        keys = await self._directory.list_keys(request.tenant, request.include_revoked)
        return tenants_pb2.ListApiKeysResponse(keys=[_key_pb(key) for key in keys])
