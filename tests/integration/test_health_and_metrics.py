"""gRPC health (SERVING only when loaded, NOT_SERVING while draining), reflection, metrics."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devtools.client import authed_channel
from devtools.launcher import ServerProcess, free_port, health_status
from service.config import Settings
from service.server import Server
from tests.integration.conftest import start_server, text_request
from transferd.v1 import embedding_pb2_grpc

EMBEDDING_SERVICE = "transferd.v1.EmbeddingService"


def test_health_is_serving_for_the_server_and_the_service(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", EMBEDDING_SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {EMBEDDING_SERVICE, "grpc.health.v1.Health"} <= names


def test_not_serving_until_every_backbone_is_loaded(tmp_path: Path, model_repo: Path) -> None:
    settings = Settings(
        grpc_host="127.0.0.1", grpc_port=free_port(), metrics_port=0,
        model_repo=model_repo, data_dir=tmp_path,
    )  # fmt: skip

    async def scenario() -> tuple[int | None, int | None]:
        server = Server(settings)
        await server.listen()
        address = f"127.0.0.1:{server.port}"
        before = await asyncio.to_thread(health_status, address)
        await server.load()
        after = await asyncio.to_thread(health_status, address)
        await server.stop()
        return before, after

    before, after = asyncio.run(scenario())
    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert after == health_pb2.HealthCheckResponse.SERVING


def test_sigterm_drains_not_serving_and_finishes_in_flight_work(
    tmp_path: Path, model_repo: Path, sentences
) -> None:
    process = start_server(tmp_path, model_repo, TRANSFERD_DRAIN_DELAY_S="3")
    with authed_channel(process.address, process.create_tenant_key("acme")) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        in_flight = stub.Embed.future(text_request(sentences * 3))  # 60 texts: takes a while
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.5
        seen = None
        while time.monotonic() < deadline and seen != health_pb2.HealthCheckResponse.NOT_SERVING:
            seen = health_status(process.address)
            time.sleep(0.05)
        assert seen == health_pb2.HealthCheckResponse.NOT_SERVING
        assert len(in_flight.result(timeout=30).embeddings) == 60
    assert process.process.wait(timeout=30) == 0


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """One sample of the exposition text; 0 when the series does not exist yet."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_with_traffic(server: ServerProcess, embedding_stub, sentences) -> None:
    before = _scrape(server.metrics_port)
    embedding_stub.Embed(text_request(sentences[:5]))
    with pytest.raises(grpc.RpcError):
        embedding_stub.Embed(text_request(sentences[:1], backbone="nope"))
    after = _scrape(server.metrics_port)

    method = {"method": "EmbeddingService/Embed"}
    assert _value(after, "transferd_requests_total", code="OK", **method) == pytest.approx(
        _value(before, "transferd_requests_total", code="OK", **method) + 1
    )
    assert _value(
        after, "transferd_requests_total", code="INVALID_ARGUMENT", **method
    ) == pytest.approx(
        _value(before, "transferd_requests_total", code="INVALID_ARGUMENT", **method) + 1
    )
    backbone = {"backbone": "all-minilm-l6-v2"}
    for series, labels in [
        ("transferd_request_duration_seconds_count", method),
        ("transferd_batch_size_count", backbone),
        ("transferd_inference_duration_seconds_count", {**backbone, "runtime": "embedded"}),
    ]:
        assert _value(after, series, **labels) > _value(before, series, **labels), series
    assert _value(after, "transferd_embedded_inputs_total", **backbone) == pytest.approx(
        _value(before, "transferd_embedded_inputs_total", **backbone) + 5
    )
    assert 'transferd_queue_depth{backbone="all-minilm-l6-v2"}' in after
    assert 'transferd_batch_size_bucket{backbone="all-minilm-l6-v2",le="64.0"}' in after


def test_sigterm_while_waiting_for_a_backbone_stops_at_once(
    tmp_path: Path, model_repo: Path
) -> None:
    """A gateway waiting at start-up (here for a Triton that never comes) still obeys SIGTERM."""
    process = ServerProcess(
        {
            "TRANSFERD_MODEL_REPO": str(model_repo),
            "TRANSFERD_DATA_DIR": str(tmp_path / "data"),
            "TRANSFERD_RUNTIME": "triton",
            "TRANSFERD_TRITON_URL": f"127.0.0.1:{free_port()}",  # nothing listens there
            "TRANSFERD_TRITON_STARTUP_TIMEOUT_S": "300",
        },
        tmp_path / "server.log",
        ready_timeout=5,
    )
    with pytest.raises(TimeoutError):  # it is up, NOT_SERVING, waiting
        process.start()
    assert health_status(process.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    started = time.monotonic()
    assert process.stop(timeout=20) == 0
    assert time.monotonic() - started < 10
