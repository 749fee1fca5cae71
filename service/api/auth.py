"""The auth interceptor: `authorization: Bearer <secret>` → the caller's Principal.

Runs inside ErrorsAndMetricsInterceptor, so its refusals are mapped and counted like any error.
Health and reflection need no key (probes and tools call them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.api.interceptors import rewrap_handler
from service.errors import Unauthenticated
from service.tenancy.directory import TenantDirectory
from service.tenancy.principal import set_principal

OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def bearer_secret(context: grpc.aio.ServicerContext) -> str:
    """The secret of the `authorization: Bearer …` metadata entry."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, secret = str(value).partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <API key>'")
    raise Unauthenticated("missing 'authorization: Bearer <API key>' metadata")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC but health and reflection, and records who is calling."""

    def __init__(self, directory: TenantDirectory) -> None:
        self._directory = directory

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if details.method.startswith(OPEN_SERVICES):
            return handler
        return rewrap_handler(handler, self._unary, self._stream)

    def _authenticate(self, context: grpc.aio.ServicerContext) -> None:
        set_principal(self._directory.authenticate(bearer_secret(context)))

    def _unary(self, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._authenticate(context)
            return await inner(request, context)

        return handle

    def _stream(
        self, inner: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self._authenticate(context)
            async for response in inner(request, context):
                yield response

        return handle
