"""Traces: opt-in OpenTelemetry spans, behind a facade that costs nothing when they are off.

Tracing is on when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set at start-up (`start_from_env`, called by the
server); `OTEL_SERVICE_NAME` names the service (default "transferd"), and the other standard
`OTEL_*` variables (batch delays, headers, certificates, `OTEL_SDK_DISABLED`) mean what they
mean to the SDK. Only then is OpenTelemetry imported (`service.tracing.otel`): with the
variables unset, every function here returns at its first line, a span is one shared object
whose `with` does nothing, and nothing of OpenTelemetry is ever loaded.

What a span may carry is decided here and in the callers, never by dumping a request: names of
methods, backbones, heads and stages, counts, sizes, the tenant and the status. Never the API
key or any other metadata but `traceparent`/`tracestate`, never a text, an image, a label or an
exception's message (which may quote an input): a failed span carries its error's type only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: What a span attribute may hold (OpenTelemetry's primitive types).
AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]

#: The span attribute naming the calling tenant.
TENANT = "transferd.tenant"

#: The only metadata a trace reads: the W3C trace context of the caller.
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})

#: The variables that turn tracing on (either one).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Span(Protocol):
    """What callers may do to a span."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_error(self, kind: str) -> None:
        """Marks the span failed, with the error's kind (a type or status name, no message)."""


class Backend(Protocol):
    """The OpenTelemetry side (`service.tracing.otel.OtelBackend`)."""

    def span(
        self, name: str, attributes: Attributes | None, root: bool
    ) -> AbstractContextManager[Span]: ...

    def server_span(
        self, name: str, headers: dict[str, str], attributes: Attributes
    ) -> AbstractContextManager[Span]: ...

    def capture(self) -> object | None: ...

    def record(
        self,
        name: str,
        parent: object,
        start_ns: int,
        end_ns: int,
        attributes: Attributes | None,
        error: str | None,
    ) -> None: ...

    def annotate(self, key: str, value: AttributeValue) -> None: ...

    def shutdown(self, timeout_s: float) -> None: ...


class _NoSpan:
    """The span of tracing off: one shared object, a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_error(self, kind: str) -> None:
        pass


NO_SPAN = _NoSpan()

_backend: Backend | None = None


def enabled() -> bool:
    """Whether spans are recorded (callers guard work that only a span needs)."""
    return _backend is not None


def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Span]:
    """A span, child of the current one, current inside the `with`. An exception leaving it
    marks it failed with the exception's type (never its message)."""
    if _backend is None:
        return NO_SPAN
    return _backend.span(name, attributes, False)


def root_span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Span]:
    """A span that starts a trace of its own, whatever is current (a training job's)."""
    if _backend is None:
        return NO_SPAN
    return _backend.span(name, attributes, True)


def server_span(
    full_method: str, metadata: Callable[[], Iterable[tuple[str, Any]] | None]
) -> AbstractContextManager[Span]:
    """The span of one RPC, named after its method (``package.Service/Method``), the child of
    the caller's span when its metadata carries a W3C `traceparent`.

    Args:
        full_method: gRPC's method path, ``/package.Service/Method``.
        metadata: Reads the call's metadata (only when tracing is on); only `traceparent` and
            `tracestate` are taken from it.
    """
    if _backend is None:
        return NO_SPAN
    headers = {
        key: value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        for key, value in metadata() or ()
        if key in TRACE_HEADERS
    }
    name = full_method.lstrip("/")
    service, _, method = name.rpartition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    return _backend.server_span(name, headers, attributes)


def annotate(key: str, value: AttributeValue) -> None:
    """Sets an attribute on the current span (none: nothing)."""
    if _backend is not None:
        _backend.annotate(key, value)


def capture() -> object | None:
    """The current span's context, for work that another task or thread does on its behalf
    (the batcher's calls, a training thread's stages); None when tracing is off or no span is
    current, and then `record` and `Stages` do nothing with it."""
    if _backend is None:
        return None
    return _backend.capture()


def record(
    name: str,
    parent: object | None,
    start_ns: int,
    end_ns: int,
    attributes: Attributes | None = None,
    error: str | None = None,
) -> None:
    """A finished span, child of a `capture`d context, from `start_ns` to `end_ns`
    (`time.time_ns`); `error`: the kind it failed with."""
    if _backend is not None and parent is not None:
        _backend.record(name, parent, start_ns, end_ns, attributes, error)


class Stages:
    """One span per stage of work reported by name from any thread (a training thread's
    progress): a stage lasts until the next one is entered, or the `with` ends. Its spans are
    children of the span current where the `with` starts.

    Args:
        prefix: Span names are ``prefix.stage`` (spaces made underscores).
        end_with: A stage name that ends the last stage instead of starting one.
    """

    def __init__(self, prefix: str, end_with: str = "done") -> None:
        self._prefix = prefix
        self._end_with = end_with
        self._parent: object | None = None
        self._current: tuple[str, int] | None = None

    def __enter__(self) -> Stages:
        self._parent = capture()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._parent is not None:
            self._end(time.time_ns(), None if kind is None else kind.__name__)
        self._parent = None

    def enter(self, stage: str) -> None:
        """The work is at `stage` now (a stage entered again goes on)."""
        if self._parent is None or (self._current and self._current[0] == stage):
            return
        now = time.time_ns()
        self._end(now)
        if stage != self._end_with:
            self._current = (stage, now)

    def _end(self, now: int, error: str | None = None) -> None:
        if self._current is not None:
            stage, started = self._current
            self._current = None
            name = f"{self._prefix}.{stage.replace(' ', '_')}"
            record(name, self._parent, started, now, None, error)


def start_from_env(environ: Mapping[str, str]) -> bool:
    """Turns tracing on when `environ` names an OTLP endpoint (see the module's doc); returns
    whether it is on. Called once at start-up; a second call keeps the first one's exporter.

    Raises:
        RuntimeError: an endpoint is set but OpenTelemetry is not installed.
    """
    if _backend is not None:
        return True
    endpoint = next((environ[v] for v in ENDPOINT_VARIABLES if environ.get(v, "").strip()), None)
    if endpoint is None or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        from service.tracing.otel import OtelBackend
    except ImportError as error:
        raise RuntimeError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry cannot be imported ({error}); "
            "install transferd's dependencies, or unset it"
        ) from error
    start(OtelBackend())
    log.info("tracing: spans exported by OTLP/gRPC to %s", endpoint)
    return True


def start(backend: Backend) -> None:
    """Records spans through `backend` from now on (`start_from_env`; tests)."""
    global _backend
    _backend = backend


def shutdown(timeout_s: float = 5.0) -> None:
    """Turns tracing off and exports the spans still buffered, for at most `timeout_s`: an
    unreachable collector makes the exporter retry for longer, and must not hold a shutdown.
    Blocking: call it off the event loop."""
    global _backend
    backend, _backend = _backend, None
    if backend is None:
        return
    # A daemon thread: one still retrying when the process ends does not keep it alive.
    flushing = threading.Thread(
        target=backend.shutdown, args=(timeout_s,), name="tracing-shutdown", daemon=True
    )
    flushing.start()
    flushing.join(timeout_s)
    if flushing.is_alive():
        log.warning("tracing: spans not exported within %gs of shutdown; dropped", timeout_s)
