"""Server interceptors: the one mapping of error kinds to status codes, and per-RPC metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

import heads
from service import errors, metrics

log = logging.getLogger(__name__)

STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    # The heads package's caller errors carry the request field, like InvalidArgument.
    heads.InvalidTrainingData: grpc.StatusCode.INVALID_ARGUMENT,
    heads.InvalidParams: grpc.StatusCode.INVALID_ARGUMENT,
    heads.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
}

INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised by a handler."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind], str(error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class _Outcome:
    """Around one RPC: maps what it raises to a status code and records the metrics."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()

    async def __aenter__(self) -> _Outcome:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> bool:
        try:
            # AbortError: the handler aborted itself; BaseExceptions (cancellation) pass through.
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                code, message = status_of(error)
                if code is grpc.StatusCode.INTERNAL:
                    log.exception("unhandled error in %s", self.method, exc_info=error)
                self.code = code
                await self.context.abort(code, message)  # raises AbortError
        finally:
            self._record()
        return False

    def _record(self) -> None:
        # A handler may set a code itself (context.set_code / abort): prefer what was sent.
        sent = self.context.code()
        code = sent if isinstance(sent, grpc.StatusCode) else self.code
        metrics.REQUESTS.labels(method=self.method, code=code.name).inc()
        metrics.REQUEST_LATENCY.labels(method=self.method).observe(
            time.perf_counter() - self.started
        )


def _short_method(full: str) -> str:
    """`/transferd.v1.EmbeddingService/Embed` → `EmbeddingService/Embed` (a bounded label)."""
    service, _, method = full.rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


class ErrorsAndMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Maps TransferdError kinds to status codes (anything else: INTERNAL, details to the log only)
    and records requests and latency per method and code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = _short_method(details.method)
        return rewrap_handler(handler, _wrap_unary(method), _wrap_stream(method))


UnaryWrapper = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]
StreamWrapper = Callable[[Callable[..., AsyncIterator[Any]]], Callable[..., AsyncIterator[Any]]]


def rewrap_handler(
    handler: grpc.RpcMethodHandler | None, unary: UnaryWrapper, stream: StreamWrapper
) -> grpc.RpcMethodHandler | None:
    """The same handler with its unary-unary or unary-stream behaviour wrapped (the API has no
    client-streaming RPCs; reflection's stream-stream RPC passes through unwrapped)."""
    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _wrap_unary(method: str) -> UnaryWrapper:
    def wrap(inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with _Outcome(method, context):
                return await inner(request, context)

        return handle

    return wrap


def _wrap_stream(method: str) -> StreamWrapper:
    def wrap(inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with _Outcome(method, context):
                async for response in inner(request, context):
                    yield response

        return handle

    return wrap
