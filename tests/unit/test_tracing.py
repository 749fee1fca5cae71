"""The tracing facade: nothing at all when off; when on (an in-memory exporter), the caller's
W3C context continued, errors by kind only, and the batcher's spans in every request's trace."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from service import tracing
from service.backbones.admission import AdmissionGate
from service.backbones.batcher import CallPolicy, FairBatcher
from service.errors import ResourceExhausted

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_off_everything_is_one_shared_no_op_and_the_metadata_is_never_read() -> None:
    assert not tracing.enabled()
    assert not tracing.start_from_env({})
    # An endpoint with the SDK disabled by its standard variable: still off.
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    assert not tracing.start_from_env(disabled)

    def metadata() -> list[tuple[str, str]]:
        raise AssertionError("read with tracing off")

    assert tracing.server_span("/transferd.v1.EmbeddingService/Embed", metadata) is tracing.NO_SPAN
    with tracing.span("admission", {"transferd.cost": 1}) as span:
        span.set_attribute("a", 1)
        span.set_error("Kind")
    assert tracing.capture() is None
    tracing.record("x", None, 0, 1)
    tracing.annotate("transferd.tenant", "acme")
    with tracing.Stages("heads") as stages:
        stages.enter("fit")


@pytest.fixture
def spans() -> Iterator[object]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from service.tracing.otel import OtelBackend

    exporter = InMemorySpanExporter()
    tracing.start(OtelBackend(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _by_name(exporter: object) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for span in exporter.get_finished_spans():  # type: ignore[attr-defined]
        found.setdefault(span.name, []).append(span)
    return found


def test_an_rpc_continues_the_callers_trace_and_reads_no_other_metadata(spans: object) -> None:
    metadata = [
        ("authorization", "Bearer s3cret-key"),
        ("traceparent", TRACEPARENT),
        ("user-agent", "grpc-python"),
    ]
    with tracing.server_span("/transferd.v1.EmbeddingService/Embed", lambda: metadata):
        tracing.annotate(tracing.TENANT, "acme")
        with tracing.span("admission"):
            pass
    found = _by_name(spans)
    [rpc] = found["transferd.v1.EmbeddingService/Embed"]
    [child] = found["admission"]
    assert f"{rpc.context.trace_id:032x}" == TRACE_ID
    assert f"{rpc.parent.span_id:016x}" == PARENT_ID and rpc.parent.is_remote
    assert child.parent.span_id == rpc.context.span_id
    assert rpc.attributes["transferd.tenant"] == "acme"
    assert rpc.attributes["rpc.method"] == "Embed"
    text = repr([dict(s.attributes) for s in spans.get_finished_spans()])  # type: ignore[attr-defined]
    assert "s3cret" not in text and "grpc-python" not in text


def test_without_a_traceparent_an_rpc_starts_a_trace_of_its_own(spans: object) -> None:
    with tracing.span("outer"):
        with tracing.server_span("/p.S/M", lambda: [("tracestate", "a=b")]):
            pass
    rpc = _by_name(spans)["p.S/M"][0]
    assert rpc.parent is None


def test_a_failed_span_carries_the_errors_kind_never_its_message(spans: object) -> None:
    gate = AdmissionGate("minilm", capacity=10, unit="tokens")
    held = gate.admit("acme", 8)
    with pytest.raises(ResourceExhausted):
        with tracing.span("rpc"):
            gate.admit("acme", 8)  # over acme's share: refused
    held.release()
    refused = [s for s in _by_name(spans)["admission"] if s.status.status_code.name == "ERROR"]
    [span] = refused
    assert span.attributes["error.type"] == "ResourceExhausted"
    assert span.status.description == "ResourceExhausted"
    assert not span.events  # no exception event: its message may quote an input


def test_a_shared_batch_is_recorded_in_the_trace_of_each_request_with_its_size(
    spans: object,
) -> None:
    async def run(items: list[int]) -> list[np.ndarray]:
        return [np.array([item], dtype=np.float32) for item in items]

    async def scenario() -> None:
        batcher: FairBatcher[int, np.ndarray] = FairBatcher(
            "minilm",
            run,
            CallPolicy(
                plan=lambda items: [list(range(len(items)))],
                cost=len,
                fits=lambda call, group: True,
                quantum=8.0,
            ),
            max_wait_s=0.5,
            fill_items=3,
        )
        batcher.start()

        async def request(method: str, items: list[int]) -> None:
            with tracing.server_span(method, lambda: []):
                await batcher.submit("acme", items)

        await asyncio.gather(request("/p.S/A", [1]), request("/p.S/B", [2, 3]))
        await batcher.close()

    asyncio.run(scenario())
    found = _by_name(spans)
    rpcs = {span.name: span for span in found["p.S/A"] + found["p.S/B"]}
    for name, items in (("p.S/A", 1), ("p.S/B", 2)):
        trace_id = rpcs[name].context.trace_id
        [batch] = [s for s in found["inference.batch"] if s.context.trace_id == trace_id]
        [wait] = [s for s in found["inference.queue_wait"] if s.context.trace_id == trace_id]
        assert batch.attributes["transferd.batch_size"] == 3  # one call for both requests
        assert batch.attributes["transferd.items"] == items
        assert batch.parent.span_id == wait.parent.span_id == rpcs[name].context.span_id
        assert wait.end_time <= batch.start_time


def test_stages_reported_from_a_thread_are_children_of_the_span_around_them(
    spans: object,
) -> None:
    stages = tracing.Stages("heads")
    with tracing.span("job.training"), stages:
        worker = threading.Thread(
            target=lambda: [stages.enter(s) for s in ("split", "fit", "fit", "export", "done")]
        )
        worker.start()
        worker.join()
    found = _by_name(spans)
    [training] = found["job.training"]
    names = [s.name for s in spans.get_finished_spans() if s.name.startswith("heads.")]  # type: ignore[attr-defined]
    assert names == ["heads.split", "heads.fit", "heads.export"]
    assert all(found[n][0].parent.span_id == training.context.span_id for n in names)
