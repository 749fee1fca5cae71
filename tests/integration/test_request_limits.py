"""Cost is bounded before work: hostile messages are refused cheaply, before auth decodes a byte.

Each attack is a raw message sent as bytes (no client-side encoding of millions of objects), to
the real server, while a second client checks that health and other tenants stay responsive.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.client import bearer
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server, text_request
from transferd.v1 import embedding_pb2, embedding_pb2_grpc, heads_pb2

EMBED = "/transferd.v1.EmbeddingService/Embed"
TRAIN = "/transferd.v1.HeadService/TrainHead"
GET_JOB = "/transferd.v1.HeadService/GetJob"


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator:
    """A server with the default count limits (1024 inputs, 20,000 examples)."""
    tmp = tmp_path_factory.mktemp("limits")
    process = start_server(
        tmp,
        model_repo,
        TRANSFERD_MAX_INPUTS_PER_REQUEST="1024",
        TRANSFERD_MAX_EXAMPLES_PER_JOB="20000",
    )
    process.log_path = tmp / "server.log"  # type: ignore[attr-defined] - where start_server logs
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(limits_server: ServerProcess) -> str:
    return limits_server.create_tenant_key("limits")


def _rss_bytes(process: ServerProcess) -> int:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def _send_raw(address: str, method: str, body: bytes, metadata: tuple = ()) -> grpc.RpcError:
    """Sends `body` as the request of `method` and returns the error it must end with."""
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(method)  # no serializers: bytes in, bytes out
        with pytest.raises(grpc.RpcError) as caught:
            call(body, metadata=metadata, timeout=60)
    return caught.value  # type: ignore[return-value]


def _health_latencies(address: str, stop: threading.Event, out: list[float]) -> None:
    """Health checks, one after another, until `stop` (each one's latency in `out`)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            started = time.perf_counter()
            stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
            out.append(time.perf_counter() - started)
            time.sleep(0.02)


def _while_probed(address: str, attack: Callable[[], grpc.RpcError]) -> tuple[grpc.RpcError, float]:
    """Runs `attack` while health is probed; returns its error and the slowest health check."""
    stop = threading.Event()
    latencies: list[float] = []
    prober = threading.Thread(target=_health_latencies, args=(address, stop, latencies))
    prober.start()
    try:
        time.sleep(0.2)
        error = attack()
        time.sleep(0.2)
    finally:
        stop.set()
        prober.join(timeout=60)
    assert latencies, "health never answered"
    return error, max(latencies)


def _repeated_empty(field_number: int, count: int) -> bytes:
    """`count` empty elements of a repeated message field: two bytes each on the wire."""
    return bytes([field_number << 3 | 2, 0]) * count


def test_ten_million_inputs_are_refused_before_decoding(limits_server, key) -> None:
    body = embedding_pb2.EmbedRequest(backbone=BACKBONE).SerializeToString()
    body += _repeated_empty(2, 10_000_000)  # 20 MB: 10 million empty Inputs
    before = _rss_bytes(limits_server)
    started = time.perf_counter()
    error, slowest_health = _while_probed(
        limits_server.address, lambda: _send_raw(limits_server.address, EMBED, body, bearer(key))
    )
    took = time.perf_counter() - started
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("inputs: more than 1024")
    # Before: 11 s, with every other call (health included) blocked and +1.26 GB kept.
    assert took < 5, took
    assert slowest_health < 1.0, slowest_health
    assert _rss_bytes(limits_server) - before < 200 * 1024 * 1024


def test_a_request_without_a_key_is_refused_without_decoding(limits_server) -> None:
    body = _repeated_empty(2, 31_000_000)  # 62 MB of empty Inputs, no key at all
    before = _rss_bytes(limits_server)
    error, slowest_health = _while_probed(
        limits_server.address, lambda: _send_raw(limits_server.address, EMBED, body)
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert slowest_health < 1.0, slowest_health
    # Before: +1.5 GB. The raw bytes themselves pass through gRPC's buffers once.
    assert _rss_bytes(limits_server) - before < 300 * 1024 * 1024


def test_three_million_examples_are_refused_at_once(limits_server, key) -> None:
    body = heads_pb2.TrainHeadRequest(head="bomb", backbone=BACKBONE).SerializeToString()
    body += _repeated_empty(4, 3_000_000)
    error, slowest_health = _while_probed(
        limits_server.address, lambda: _send_raw(limits_server.address, TRAIN, body, bearer(key))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("examples: more than 20000")
    assert slowest_health < 1.0, slowest_health


def test_a_label_bomb_inside_one_example_is_refused_before_decoding(limits_server, key) -> None:
    """Five million 2-letter labels in one example (20 MB) would be gigabytes of strings."""
    labels = bytes([3 << 3 | 2, 2]) + b"ab"  # Example.labels = "ab"
    example = labels * 5_000_000
    length, size = bytearray(), len(example)
    while True:  # the example's length as a varint
        length.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    body = heads_pb2.TrainHeadRequest(head="bomb", backbone=BACKBONE).SerializeToString()
    body += bytes([4 << 3 | 2]) + bytes(length) + example
    before = _rss_bytes(limits_server)
    error, slowest_health = _while_probed(
        limits_server.address, lambda: _send_raw(limits_server.address, TRAIN, body, bearer(key))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("examples[0].labels: more than 10000 given")
    assert slowest_health < 1.0, slowest_health
    assert _rss_bytes(limits_server) - before < 200 * 1024 * 1024


def test_small_methods_have_small_receive_limits(limits_server, key) -> None:
    body = heads_pb2.GetJobRequest(job_id="j" * 1_000_000).SerializeToString()
    error = _send_raw(limits_server.address, GET_JOB, body, bearer(key))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the limit of 64.0 KiB for /transferd.v1.HeadService/GetJob" in error.details()


def test_values_echoed_in_errors_are_cut(limits_server, key) -> None:
    body = heads_pb2.GetJobRequest(job_id="j" * 60_000).SerializeToString()
    error = _send_raw(limits_server.address, GET_JOB, body, bearer(key))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert len(error.details()) < 200, error.details()


def _count(metrics_port: int, method: str, code: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = rf'transferd_requests_total\{{code="{code}",method="{method}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_a_malformed_message_is_invalid_argument_logged_once_and_counted(
    limits_server, key
) -> None:
    # Field 1 (backbone, a string) holding bytes that are not UTF-8.
    body = bytes([1 << 3 | 2, 2, 0xC3, 0x28])
    before = _count(limits_server.metrics_port, "EmbeddingService/Embed", "INVALID_ARGUMENT")
    log_before = limits_server.log_path.read_text()
    for _ in range(3):
        error = _send_raw(limits_server.address, EMBED, body, bearer(key))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "request: is not a valid protobuf message"
    after = _count(limits_server.metrics_port, "EmbeddingService/Embed", "INVALID_ARGUMENT")
    assert after - before == 3
    logged = limits_server.log_path.read_text()[len(log_before) :]
    assert "Traceback" not in logged
    assert logged.count("malformed") == 3, logged


def test_a_truncated_message_is_invalid_argument(limits_server, key) -> None:
    body = text_request(["hello"]).SerializeToString()[:-3]
    error = _send_raw(limits_server.address, EMBED, body, bearer(key))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_the_admin_key_has_no_share_of_the_backbones(limits_server) -> None:
    with grpc.insecure_channel(limits_server.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Embed(text_request(["hi"]), metadata=bearer(limits_server.admin_key), timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_server_still_embeds_after_the_attacks(limits_server, key) -> None:
    with grpc.insecure_channel(limits_server.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        reply = stub.Embed(text_request(["still here"]), metadata=bearer(key), timeout=30)
    assert len(reply.embeddings[0].values) == 384
