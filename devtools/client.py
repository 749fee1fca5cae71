"""Client-side helpers: API-key metadata and channels that send it on every call.

For tests, benchmarks and examples; production clients need only the generated stubs and the
`authorization: Bearer <secret>` metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

Metadata = tuple[tuple[str, str], ...]


def bearer(secret: str) -> Metadata:
    """The metadata that authenticates a call."""
    return (("authorization", f"Bearer {secret}"),)


def _with_bearer(details: Any, secret: str) -> Sequence[tuple[str, str]]:
    return [*(details.metadata or ()), *bearer(secret)]


class _BearerDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, secret: str) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = _with_bearer(details, secret)
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _SyncBearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(_BearerDetails(details, self._secret), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(_BearerDetails(details, self._secret), request)


class _AsyncBearerUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_BearerDetails(details, self._secret), request)


class _AsyncBearerStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_BearerDetails(details, self._secret), request)


def authed_channel(address: str, secret: str) -> grpc.Channel:
    """A blocking channel whose every call carries the key."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _SyncBearer(secret))


def authed_aio_channel(address: str, secret: str) -> grpc.aio.Channel:
    """An asyncio channel whose every call carries the key."""
    return grpc.aio.insecure_channel(
        address, interceptors=[_AsyncBearerUnary(secret), _AsyncBearerStream(secret)]
    )
