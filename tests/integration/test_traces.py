"""OpenTelemetry traces of the real server, received by an OTLP collector the test runs itself:
the caller's trace continued, the spans of admission, queueing, batching, head predict and the
training stages, the tenant on them, and never a key or an input text. With the variables unset,
the server (training included) never imports OpenTelemetry."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from devtools.client import bearer
from tests.conftest import ROOT
from tests.integration.conftest import (
    labelled,
    server_process,
    text_request,
    topics,
    train_request,
)
from transferd.v1 import common_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector on a free loopback port, keeping every export as sent."""

    def __init__(self) -> None:
        self.exports: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.exports.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self._server.stop(grace=None)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            exports = list(self.exports)
        return [
            ReceivedSpan(
                span.name,
                span.trace_id.hex(),
                span.span_id.hex(),
                span.parent_span_id.hex(),
                {
                    kv.key: getattr(kv.value, str(kv.value.WhichOneof("value")))
                    for kv in span.attributes
                },
            )
            for export in exports
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def service_names(self) -> set[str]:
        with self._lock:
            return {
                kv.value.string_value
                for export in self.exports
                for resource in export.resource_spans
                for kv in resource.resource.attributes
                if kv.key == "service.name"
            }

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.spans()):
            if time.monotonic() > deadline:
                names = sorted({span.name for span in self.spans()})
                raise AssertionError(f"spans not received in {timeout}s; received: {names}")
            time.sleep(0.1)


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.stop()


def _traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent of a client span: (header, trace id, parent span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _in_trace(spans: list[ReceivedSpan], trace_id: str, name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id and span.name == name]


def _texts(prefix: str, count: int) -> list[str]:
    """Texts no other call of the test sends (the embedding cache would answer them)."""
    return [
        f"{prefix} {secrets.token_hex(4)} is what sentence {i} talks about" for i in range(count)
    ]


def test_spans_reach_the_collector_continue_the_callers_trace_and_carry_no_secret(
    tmp_path: Path, minilm_repo: Path, collector: Collector
) -> None:
    server = server_process(
        tmp_path,
        minilm_repo,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        OTEL_SERVICE_NAME="transferd-traces-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
    ).start()
    try:
        key = server.create_tenant_key("acme")
        embed_texts = _texts("weather", 3)
        predict_texts = _texts("football", 2)
        pairs = labelled(topics()["train"])
        embed_parent, embed_trace, embed_span = _traceparent()
        train_parent, train_trace, _ = _traceparent()
        predict_parent, predict_trace, _ = _traceparent()
        with grpc.insecure_channel(server.address) as channel:
            embedding = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            heads = heads_pb2_grpc.HeadServiceStub(channel)
            embedding.Embed(
                text_request(embed_texts), metadata=(*bearer(key), ("traceparent", embed_parent))
            )
            job = heads.TrainHead(
                train_request("traced", pairs),
                metadata=(*bearer(key), ("traceparent", train_parent)),
            )
            final = list(
                heads.WatchJob(
                    heads_pb2.WatchJobRequest(job_id=job.job_id), metadata=bearer(key), timeout=300
                )
            )[-1]
            assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
            heads.Predict(
                heads_pb2.PredictRequest(
                    head="traced", inputs=[common_pb2.Input(text=t) for t in predict_texts]
                ),
                metadata=(*bearer(key), ("traceparent", predict_parent)),
            )

        def complete(spans: list[ReceivedSpan]) -> bool:
            names = {span.name for span in spans}
            return {"head.predict", "job.publishing", "inference.batch"} <= names and any(
                s.name.endswith("HeadService/Predict") for s in spans
            )

        collector.wait_for(complete)
    finally:
        server.stop()
    spans = collector.spans()
    assert collector.service_names() == {"transferd-traces-test"}

    # Embed: the RPC span is the child of the client's span, in its trace, with the tenant.
    [rpc] = _in_trace(spans, embed_trace, "transferd.v1.EmbeddingService/Embed")
    assert rpc.parent_span_id == embed_span
    assert rpc.attributes["transferd.tenant"] == "acme"
    assert rpc.attributes["rpc.grpc.status_code"] == 0
    for name in ("admission", "preprocess", "inference.queue_wait", "inference.batch"):
        assert _in_trace(spans, embed_trace, name), f"no {name} span in Embed's trace"
    for batch in _in_trace(spans, embed_trace, "inference.batch"):
        assert batch.attributes["transferd.batch_size"] >= batch.attributes["transferd.items"] >= 1
    [admission] = _in_trace(spans, embed_trace, "admission")
    assert admission.parent_span_id == rpc.span_id

    # Predict: the head's call, beside the embedding of the inputs.
    [predict] = _in_trace(spans, predict_trace, "transferd.v1.HeadService/Predict")
    assert predict.attributes["transferd.tenant"] == "acme"
    [head] = _in_trace(spans, predict_trace, "head.predict")
    assert head.parent_span_id == predict.span_id
    assert head.attributes["transferd.head"] == "traced"
    assert head.attributes["transferd.inputs"] == len(predict_texts)
    assert _in_trace(spans, predict_trace, "inference.batch")

    # TrainHead names its job; the job is a trace of its own, one span per stage.
    [train] = _in_trace(spans, train_trace, "transferd.v1.HeadService/TrainHead")
    assert train.attributes["transferd.job_id"] == job.job_id
    [root] = [
        s for s in spans if s.name == "job" and s.attributes["transferd.job_id"] == job.job_id
    ]
    assert root.trace_id != train_trace and not root.parent_span_id
    assert root.attributes["transferd.tenant"] == "acme"
    stages = {s.name: s for s in spans if s.trace_id == root.trace_id}
    for name in ("job.embedding", "job.training", "job.publishing"):
        assert stages[name].parent_span_id == root.span_id
    assert stages["heads.fit"].parent_span_id == stages["job.training"].span_id
    assert "inference.batch" in stages and "admission" in stages  # the examples' embedding

    # Nothing the collector received holds a key or an input: names, attributes, events, all.
    received = b"".join(export.SerializeToString() for export in collector.exports)
    for secret in (key, server.admin_key):
        assert secret.encode() not in received
    for text in [*embed_texts, *predict_texts, *(text for text, _ in pairs)]:
        assert text.encode() not in received, text


NO_TRACING_SCRIPT = """
import asyncio, sys
from pathlib import Path

import grpc

from devtools.launcher import free_port
from service.config import Settings
from service.server import Server
from tests.integration.conftest import labelled, text_request, topics, train_request
from transferd.v1 import (
    common_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc, tenants_pb2, tenants_pb2_grpc,
)


async def main(repo: Path, data: Path) -> None:
    settings = Settings(
        model_repo=repo, data_dir=data, grpc_host="127.0.0.1", grpc_port=0,
        metrics_port=free_port(), admin_key="admin-secret",
    )
    server = Server(settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            admin = (("authorization", "Bearer admin-secret"),)
            tenants = tenants_pb2_grpc.TenantServiceStub(channel)
            await tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="acme"), metadata=admin)
            reply = await tenants.CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant="acme"), metadata=admin
            )
            traced = ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            auth = (("authorization", f"Bearer {reply.secret}"), traced)
            await embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(
                text_request(["a sentence", "another one"]), metadata=auth
            )
            heads = heads_pb2_grpc.HeadServiceStub(channel)
            job = await heads.TrainHead(
                train_request("h", labelled(topics()["train"])), metadata=auth
            )
            async for update in heads.WatchJob(
                heads_pb2.WatchJobRequest(job_id=job.job_id), metadata=auth
            ):
                state = update.state
            assert state == heads_pb2.JOB_STATE_SUCCEEDED, state
            await heads.Predict(
                heads_pb2.PredictRequest(head="h", inputs=[common_pb2.Input(text="rain today")]),
                metadata=auth,
            )
    finally:
        await server.stop()
    print("loaded:", sorted(m for m in sys.modules if "opentelemetry" in m or "tracing.otel" in m))


asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def test_with_the_variables_unset_the_server_never_imports_opentelemetry(
    tmp_path: Path, minilm_repo: Path
) -> None:
    """The real server in a process of its own, through Embed, a training job and Predict with
    a traceparent in the metadata: not one OpenTelemetry module is loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRANSFERD_"))}
    result = subprocess.run(
        [sys.executable, "-c", NO_TRACING_SCRIPT, str(minilm_repo), str(tmp_path / "data")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "loaded: []", result.stdout
