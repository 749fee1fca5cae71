"""The OpenTelemetry side of `service.tracing`: imported only when tracing is on.

Spans go through a tracer provider of our own (not the global one: nothing else in the process
is instrumented), a batch span processor and the OTLP/gRPC exporter, each configured by the
standard `OTEL_*` variables (endpoint, headers, certificates, batch delays, sampler). The caller's
W3C trace context is read with the W3C propagator alone, whatever `OTEL_PROPAGATORS` says: the
metadata handed in holds `traceparent` and `tracestate` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.tracing import Attributes, AttributeValue, Span

DEFAULT_SERVICE_NAME = "transferd"


class _OtelSpan:
    """An OpenTelemetry span behind the facade's `Span`."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def set_error(self, kind: str) -> None:
        _fail(self._span, kind)


def _fail(span: trace.Span, kind: str) -> None:
    # The kind only: an error's message may quote a request's input.
    span.set_status(Status(StatusCode.ERROR, kind))
    span.set_attribute("error.type", kind)


class OtelBackend:
    """Spans exported by OTLP over gRPC (see the module's doc).

    Args:
        exporter: Where spans go instead, each as it ends (tests: an in-memory exporter).
    """

    def __init__(self, exporter: SpanExporter | None = None) -> None:
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # Shut down by `tracing.shutdown`, bounded in time; not again at exit, unbounded.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter())
            if exporter is None
            else SimpleSpanProcessor(exporter)
        )
        self._tracer = self._provider.get_tracer("transferd")
        self._propagator = TraceContextTextMapPropagator()

    def span(
        self, name: str, attributes: Attributes | None, root: bool
    ) -> AbstractContextManager[Span]:
        parent = otel_context.Context() if root else None
        started = self._tracer.start_span(name, context=parent, attributes=attributes)
        return self._current(started, errors_from_exceptions=True)

    def server_span(
        self, name: str, headers: dict[str, str], attributes: Attributes
    ) -> AbstractContextManager[Span]:
        # Without a valid traceparent: an empty context, so the RPC starts a trace.
        parent = self._propagator.extract(headers)
        started = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        # The interceptor sets the status from the RPC's status code.
        return self._current(started, errors_from_exceptions=False)

    @contextmanager
    def _current(self, span: trace.Span, errors_from_exceptions: bool) -> Iterator[Span]:
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield _OtelSpan(span)
            except BaseException as error:
                if errors_from_exceptions:
                    _fail(span, type(error).__name__)
                raise

    def capture(self) -> object | None:
        current = otel_context.get_current()
        if not trace.get_current_span(current).get_span_context().is_valid:
            return None
        return current

    def record(
        self,
        name: str,
        parent: object,
        start_ns: int,
        end_ns: int,
        attributes: Attributes | None,
        error: str | None,
    ) -> None:
        assert isinstance(parent, otel_context.Context)
        span = self._tracer.start_span(
            name, context=parent, attributes=attributes, start_time=start_ns
        )
        if error is not None:
            _fail(span, error)
        span.end(end_time=max(end_ns, start_ns))

    def annotate(self, key: str, value: AttributeValue) -> None:
        trace.get_current_span().set_attribute(key, value)

    def shutdown(self, timeout_s: float) -> None:
        self._provider.force_flush(int(timeout_s * 1000))
        self._provider.shutdown()
