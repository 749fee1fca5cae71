"""TenantService: admin only."""

from __future__ import annotations

import grpc

from service.tenancy.directory import TenantDirectory
from service.tenancy.principal import require_admin
from transferd.v1 import tenants_pb2, tenants_pb2_grpc


class TenantServicer(tenants_pb2_grpc.TenantServiceServicer):
    def __init__(self, directory: TenantDirectory) -> None:
        self._directory = directory

    async def CreateTenant(
        self, request: tenants_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.Tenant:
        require_admin()
        return tenants_pb2.Tenant(tenant=await self._directory.create_tenant(request.tenant))

    async def CreateApiKey(
        self, request: tenants_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.ApiKey:
        require_admin()
        issued = await self._directory.create_key(request.tenant)
        return tenants_pb2.ApiKey(key_id=issued.key_id, tenant=issued.tenant, secret=issued.secret)

    async def RevokeApiKey(
        self, request: tenants_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> tenants_pb2.RevokeApiKeyResponse:
        require_admin()
        await self._directory.revoke_key(request.key_id)
        return tenants_pb2.RevokeApiKeyResponse()
