"""Authentication: `authorization: Bearer <secret>` metadata → the caller's Principal.

Called by the GatewayInterceptor before the request body is decoded. Health, reflection and
the Open Inference Protocol's server-level RPCs need no key (probes, load balancers and tools
call them; they say nothing of any tenant).
"""

from __future__ import annotations

import grpc

from service.errors import Unauthenticated
from service.tenancy.directory import TenantDirectory
from service.tenancy.keys import key_id_of
from service.tenancy.principal import Principal

# Prefixes of full method names: whole services, or single methods.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
    # ModelReady, ModelMetadata and ModelInfer take a key: a model may be a tenant's head.
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ServerMetadata",
)


def bearer_secret(context: grpc.aio.ServicerContext) -> str:
    """The secret of the `authorization: Bearer …` metadata entry."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, secret = str(value).partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            raise Unauthenticated(
                "authorization metadata must be 'Bearer <API key>'", reason="missing"
            )
    raise Unauthenticated("missing 'authorization: Bearer <API key>' metadata", reason="missing")


def claimed_key_id(context: grpc.aio.ServicerContext) -> str:
    """The key id that a call's bearer secret names ("" if none), for the audit log of a
    refused call: an id is not a secret (ListApiKeys shows it), and tells an operator which key
    was tried. Never the secret itself."""
    try:
        return key_id_of(bearer_secret(context)) or ""
    except Unauthenticated:
        return ""


async def authenticate(directory: TenantDirectory, context: grpc.aio.ServicerContext) -> Principal:
    """The principal of the caller's bearer key (metadata only: the body is not decoded yet)."""
    return await directory.authenticate(bearer_secret(context))
