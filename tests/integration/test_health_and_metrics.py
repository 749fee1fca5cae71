"""gRPC health (SERVING only when loaded, NOT_SERVING while draining), reflection, metrics."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devtools.client import authed_channel
from devtools.launcher import ServerProcess, free_port, health_status
from service.config import Settings
from service.server import Server
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server, text_request
from tests.integration.scrape import server_metrics, value
from transferd.v1 import embedding_pb2_grpc

EMBEDDING_SERVICE = "transferd.v1.EmbeddingService"
WORDS = "river stone market quiet engine orange signal harbour window ladder".split()


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


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
    tmp_path: Path, model_repo: Path
) -> None:
    """A request the server is computing when SIGTERM comes is answered in full, after the
    server has begun draining (NOT_SERVING), and the server then exits cleanly."""
    # One 256-token text per inference call: a request of 32 long texts is 32 calls in a row.
    process = start_server(
        tmp_path, model_repo,
        TRANSFERD_DRAIN_DELAY_S="3", TRANSFERD_SHUTDOWN_GRACE_S="300",
        TRANSFERD_MAX_BATCH_TOKENS="256",
    )  # fmt: skip
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(300)) for i in range(32)]

    def calls() -> float:
        return value(server_metrics(process), "transferd_batch_size_count", backbone=BACKBONE)

    with authed_channel(process.address, process.create_tenant_key("acme")) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        before = calls()
        in_flight = stub.Embed.future(text_request(texts), timeout=600)
        # The server has computed some of its calls: the request is at the server, running.
        until(lambda: calls() > before, timeout=60, what="no inference call ran")
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        until(
            lambda: health_status(process.address) == health_pb2.HealthCheckResponse.NOT_SERVING,
            timeout=2.5,  # within the drain delay, while health still answers
            what="health never said NOT_SERVING",
        )
        # The drain has begun and the request is not finished: it is provably in flight.
        assert not in_flight.done(), "the request ended before the drain began: make it longer"
        reply = in_flight.result(timeout=600)
        assert len(reply.embeddings) == len(texts) and list(reply.truncated_to) == [256] * 32
    assert process.process.wait(timeout=60) == 0


def test_metrics_move_with_traffic(tmp_path: Path, model_repo: Path, sentences) -> None:
    # A server of its own: on the shared one, a job another test submitted may still be
    # embedding its examples, and its calls would move the counters read here.
    server = start_server(tmp_path, model_repo)
    try:
        with authed_channel(server.address, server.create_tenant_key("acme")) as channel:
            embedding_stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            before = server_metrics(server)
            embedding_stub.Embed(text_request(sentences[:5]))
            with pytest.raises(grpc.RpcError):
                embedding_stub.Embed(text_request(sentences[:1], backbone="nope"))
            after = server_metrics(server)
    finally:
        server.stop()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    method = {"method": "EmbeddingService/Embed"}
    assert moved("transferd_requests_total", code="OK", **method) == 1
    assert moved("transferd_requests_total", code="INVALID_ARGUMENT", **method) == 1
    assert moved("transferd_request_duration_seconds_count", **method) == 2
    backbone = {"backbone": BACKBONE}
    calls = moved("transferd_batch_size_count", **backbone)
    assert calls >= 1
    assert moved("transferd_inference_duration_seconds_count", runtime="embedded", **backbone) == (
        calls
    )
    # Every call's size lands in one bucket: 5 texts in all, so each call is within le=8.
    assert moved("transferd_batch_size_sum", **backbone) == 5
    assert moved("transferd_batch_size_bucket", le="8.0", **backbone) == calls
    assert moved("transferd_embedded_inputs_total", **backbone) == 5
    # The gauge is back to 0 once every call is answered: nothing is left waiting.
    assert value(after, "transferd_queue_depth", **backbone) == 0


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
    # Exits by itself on SIGTERM (`stop` would SIGKILL it after 20 s: exit code -9), long before
    # its 300 s wait for Triton would end.
    assert process.stop(timeout=20) == 0
    assert "while starting; stopping" in (tmp_path / "server.log").read_text()
