"""Server interceptors: the one mapping of error kinds to status codes, and per-RPC metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service import errors, metrics

log = logging.getLogger(__name__)

STATUS_OF: dict[type[errors.TransferdError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}

INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised by a handler."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind], str(error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class _Outcome:
    """Tracks the status code one RPC ends with, for the metrics."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()

    async def fail(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        code, message = status_of(error)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unhandled error in %s", self.method, exc_info=error)
        self.code = code
        await context.abort(code, message)

    def record(self, context: grpc.aio.ServicerContext) -> None:
        # A handler may set a code itself (context.set_code / abort): prefer what was sent.
        sent = context.code()
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
        if handler is None:
            return handler
        method = _short_method(details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming RPCs in the API


def _wrap_unary(inner: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        outcome = _Outcome(method)
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await outcome.fail(error, context)
        finally:
            outcome.record(context)

    return handle


def _wrap_stream(
    inner: Callable[..., AsyncIterator[Any]], method: str
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        outcome = _Outcome(method)
        try:
            async for response in inner(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await outcome.fail(error, context)
        finally:
            outcome.record(context)

    return handle
