"""The server interceptor: one place where every RPC is authenticated, limited, decoded, mapped.

For each RPC of our services, in this order: metrics and the error → status mapping wrap
everything (so refusals are counted too); the bearer key is checked from the metadata; the raw
request is size-checked, counted and only then decoded (`service.api.decoding`); the deadline is
recorded for the schedulers; the servicer runs; the reply is serialized, off the event loop when
it is large. Health and reflection need no key and keep gRPC's own decoding. With tracing on
(`service.tracing`), each RPC of our services is a span around all of that, continuing the
caller's W3C trace context, with the tenant and the status code; probes make none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, Literal

import grpc

import heads
from service import audit, errors, metrics, tracing
from service.api.audit_calls import AuditedCall, audited
from service.api.auth import OPEN_SERVICES, authenticate, claimed_key_id
from service.api.decoding import RequestDecoder
from service.errors import Unauthenticated
from service.request_context import set_deadline_in
from service.tenancy.directory import TenantDirectory
from service.tenancy.principal import Principal, current_principal, set_principal

log = logging.getLogger(__name__)

STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    # The heads package's caller errors carry the request field, like InvalidArgument.
    heads.InvalidTrainingData: grpc.StatusCode.INVALID_ARGUMENT,
    heads.InvalidParams: grpc.StatusCode.INVALID_ARGUMENT,
    heads.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
}

MAX_MESSAGE_CHARS = 1000
INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised by a handler."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            message = str(error)
            # Values are cut where messages are made; this is the net under every one of them.
            if len(message) > MAX_MESSAGE_CHARS:
                message = f"{message[:MAX_MESSAGE_CHARS]}…"
            return STATUS_OF[kind], message
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


# The codes that make a server's RPC span failed (OpenTelemetry's gRPC conventions): the
# others are the caller's errors, not the server's.
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class _Outcome:
    """Around one RPC: maps what it raises to a status code and records the metrics (and the
    status on the RPC's span)."""

    def __init__(
        self, method: str, context: grpc.aio.ServicerContext, span: tracing.Span = tracing.NO_SPAN
    ) -> None:
        self.method = method
        self.context = context
        self.span = span
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()
        # The call's audit record (`service.api.audit_calls`), for the methods audited.
        self.audit: AuditedCall | None = None

    async def __aenter__(self) -> _Outcome:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> Literal[False]:  # never swallows: the error becomes an abort, which propagates
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
        if self.audit is not None:
            self.audit.done(code)
        metrics.REQUEST_LATENCY.labels(method=self.method).observe(
            time.perf_counter() - self.started
        )
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERROR_CODES:
            self.span.set_error(code.name)


def _short_method(full: str) -> str:
    """`/transferd.v1.EmbeddingService/Embed` → `EmbeddingService/Embed` (a bounded label)."""
    service, _, method = full.rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


# Above this size a reply is serialized off the event loop.
OFF_LOOP_REPLY_BYTES = 256 * 1024


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, limits and decodes every RPC of our services; maps errors; records metrics.

    Args:
        directory: Resolves bearer secrets to principals.
        decoder: Per-method limits and decoding of raw requests.
        executor: Where large replies are serialized.
    """

    def __init__(
        self, directory: TenantDirectory, decoder: RequestDecoder, executor: Executor
    ) -> None:
        self._directory = directory
        self._decoder = decoder
        self._executor = executor

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = _short_method(details.method)
        if details.method.startswith(OPEN_SERVICES):
            return _rewrap(handler, _outcome_unary(method), _outcome_stream(method))
        # Our services: gRPC hands over raw bytes and sends the bytes we return, so that the
        # key is checked before the body is decoded and large work stays off the event loop.
        return _rewrap(
            handler,
            self._unary(details.method, method, handler.request_deserializer),
            self._stream(details.method, method, handler.request_deserializer),
            raw=True,
        )

    async def _admit(
        self, full_method: str, raw: bytes, parse: Callable[[bytes], Any], context: Any
    ) -> Any:
        """Authenticates the caller, then decodes the request under the method's limits."""
        set_principal(await self._authenticate(full_method, context))
        if tracing.enabled():
            _trace_caller()
        request = await self._decoder.decode(full_method, raw, parse)
        set_deadline_in(context.time_remaining())
        return request

    async def _authenticate(self, full_method: str, context: Any) -> Principal:
        """The caller; a refusal is counted by reason and written to the audit log."""
        try:
            return await authenticate(self._directory, context)
        except Unauthenticated as refused:
            audit.refused(
                refused.reason, peer=context.peer() or "", method=_short_method(full_method),
                key_id=claimed_key_id(context),
            )  # fmt: skip
            raise

    async def _encode(self, reply: Any) -> bytes:
        if reply.ByteSize() <= OFF_LOOP_REPLY_BYTES:
            return reply.SerializeToString()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, reply.SerializeToString
        )

    def _unary(self, full_method: str, method: str, parse: Callable[[bytes], Any]) -> UnaryWrapper:
        def wrap(inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
                with tracing.server_span(full_method, context.invocation_metadata) as span:
                    async with _Outcome(method, context, span) as outcome:
                        outcome.audit = audited(full_method, context)
                        request = await self._admit(full_method, raw, parse, context)
                        if outcome.audit is not None:
                            outcome.audit.request = request
                        reply = await inner(request, context)
                        if outcome.audit is not None:
                            outcome.audit.reply = reply
                        return await self._encode(reply)

            return handle

        return wrap

    def _stream(
        self, full_method: str, method: str, parse: Callable[[bytes], Any]
    ) -> StreamWrapper:
        def wrap(inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
            async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                with tracing.server_span(full_method, context.invocation_metadata) as span:
                    async with _Outcome(method, context, span):
                        request = await self._admit(full_method, raw, parse, context)
                        async for reply in inner(request, context):
                            yield await self._encode(reply)

            return handle

        return wrap


def _trace_caller() -> None:
    """The caller on the RPC's span: its tenant (never its key, nor its key's id)."""
    tenant = current_principal().tenant
    if tenant is None:
        tracing.annotate("transferd.admin", True)
    else:
        tracing.annotate(tracing.TENANT, tenant)


UnaryWrapper = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]
StreamWrapper = Callable[[Callable[..., AsyncIterator[Any]]], Callable[..., AsyncIterator[Any]]]


def _rewrap(
    handler: grpc.RpcMethodHandler, unary: UnaryWrapper, stream: StreamWrapper, raw: bool = False
) -> grpc.RpcMethodHandler:
    """The same handler with its unary-unary or unary-stream behaviour wrapped (the API has no
    client-streaming RPCs; reflection's stream-stream RPC passes through unwrapped). With `raw`,
    gRPC neither decodes requests nor encodes replies: the wrapper does both."""
    deserializer = None if raw else handler.request_deserializer
    serializer = None if raw else handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    return handler


def _outcome_unary(method: str) -> UnaryWrapper:
    def wrap(inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with _Outcome(method, context):
                return await inner(request, context)

        return handle

    return wrap


def _outcome_stream(method: str) -> StreamWrapper:
    def wrap(inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with _Outcome(method, context):
                async for response in inner(request, context):
                    yield response

        return handle

    return wrap
