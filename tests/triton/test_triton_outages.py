"""Triton goes away and comes back: the gateway answers UNAVAILABLE, reports NOT_SERVING, and
serves again by itself once Triton is back on the same address, without a restart of its own."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from devtools.client import authed_channel
from devtools.launcher import ServerProcess, health_status
from devtools.triton.process import TritonProcess
from service.api.readiness import LIVENESS_SERVICE
from tests.conftest import BACKBONE
from tests.integration.conftest import cosines, text_request, vectors
from tests.triton.conftest import (
    PYTHON_ENV,
    start_triton,
    start_triton_gateway,
    triton_gateway_process,
)
from transferd.v1 import embedding_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout}s")
        time.sleep(0.05)


def wait_for_health(address: str, wanted: int, timeout: float) -> None:
    """Waits until health reports `wanted`; fails the test after `timeout`."""
    until(lambda: health_status(address) == wanted, timeout, f"health never became {wanted}")


@pytest.fixture
def stack(tmp_path: Path, model_repo: Path) -> Iterator[tuple[TritonProcess, ServerProcess, str]]:
    """A Triton and a gateway of this test's own: the test kills and restarts its Triton."""
    triton = start_triton(tmp_path / "triton", model_repo)
    try:
        # The embedding cache off: the clients repeat their texts, which must reach Triton.
        gateway = start_triton_gateway(
            tmp_path / "gateway", model_repo, triton.grpc_url, TRANSFERD_EMBEDDING_CACHE_MB="0"
        )
        try:
            yield triton, gateway, gateway.create_tenant_key("acme")
        finally:
            gateway.stop()
    finally:
        triton.stop()


def test_kill_mid_run_gives_unavailable_then_the_same_gateway_recovers(stack, sentences) -> None:
    triton, gateway, key = stack
    texts = sentences[:12]
    with authed_channel(gateway.address, key) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        before = vectors(stub.Embed(text_request(texts)))

        # Clients keep calling while Triton is killed under them.
        stop = threading.Event()
        codes: list[grpc.StatusCode] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    reply = stub.Embed(text_request(texts), timeout=30)
                    assert cosines(vectors(reply), before).min() >= 0.9999
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())

        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(client) for _ in range(4)]
            try:
                served = lambda: codes.count(grpc.StatusCode.OK) >= 4  # noqa: E731
                until(served, 60, "the clients were not served")
                triton.kill()
                wait_for_health(gateway.address, NOT_SERVING, timeout=30)
                # Alive all the same: a restart of the gateway would not bring Triton back.
                assert health_status(gateway.address, LIVENESS_SERVICE) == SERVING
                refused = lambda: grpc.StatusCode.UNAVAILABLE in codes  # noqa: E731
                until(refused, 60, "the clients never got UNAVAILABLE")
            finally:
                stop.set()
            for future in running:
                future.result()
        assert grpc.StatusCode.OK in codes and grpc.StatusCode.UNAVAILABLE in codes
        # Nothing else: no INTERNAL, no hang past the deadline.
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}

        # While Triton is down every call answers UNAVAILABLE, within its deadline: the retries
        # are bounded (unbounded ones would end in DEADLINE_EXCEEDED).
        with pytest.raises(grpc.RpcError) as caught:
            stub.Embed(text_request(texts[:1]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unavailable" in caught.value.details()

        # Triton returns on the same ports; the same gateway process serves again.
        triton.start()
        wait_for_health(gateway.address, SERVING, timeout=10)
        after = vectors(stub.Embed(text_request(texts)))
        assert cosines(after, before).min() >= 0.9999
    assert gateway.process is not None and gateway.process.poll() is None


def test_gateway_started_before_triton_waits_for_it(tmp_path: Path, model_repo: Path) -> None:
    """Pods start in any order: the gateway is NOT_SERVING until Triton is up, then serves."""
    triton = TritonProcess(model_repo, tmp_path / "triton", python_env=PYTHON_ENV)
    gateway = triton_gateway_process(tmp_path / "gateway", model_repo, triton.grpc_url)
    waited: list[bool] = []
    failures: list[BaseException] = []

    def start_triton_once_the_gateway_waits() -> None:
        try:
            # Up, answering health, NOT_SERVING: the gateway waits for Triton. Only now start it.
            wait_for_health(gateway.address, NOT_SERVING, timeout=120)
            waited.append(True)
            triton.start()
        except BaseException as error:
            failures.append(error)

    starter = threading.Thread(target=start_triton_once_the_gateway_waits, daemon=True)
    starter.start()
    try:
        gateway.start()  # returns once SERVING
        assert waited == [True] and not failures, failures
        with authed_channel(gateway.address, gateway.create_tenant_key("acme")) as channel:
            reply = embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(text_request(["hi"]))
        assert len(reply.embeddings) == 1
    finally:
        if gateway.process is not None:
            gateway.stop()
        starter.join(timeout=300)
        triton.stop()


def test_gateway_gives_up_when_triton_never_comes(tmp_path: Path, model_repo: Path) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        start_triton_gateway(
            tmp_path, model_repo, "127.0.0.1:9", TRANSFERD_TRITON_STARTUP_TIMEOUT_S="1"
        )
    log = (tmp_path / "server.log").read_text()
    assert "Triton at 127.0.0.1:9 not ready after 1s" in log


def test_gateway_refuses_a_triton_model_that_differs_from_its_card(
    tmp_path: Path, model_repo: Path, triton: TritonProcess
) -> None:
    """A card that promises 512 dimensions against Triton's 384: refused at start, naming both."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo, symlinks=True)
    card = repo / BACKBONE / "backbone.json"
    card.write_text(card.read_text().replace('"dim": 384', '"dim": 512'))
    with pytest.raises(RuntimeError, match="exited"):
        start_triton_gateway(tmp_path, repo, triton.grpc_url)
    log = (tmp_path / "server.log").read_text()
    assert "output embedding is FP32[-1, 384], not FP32 [-1, 512]" in log


def test_vectors_do_not_depend_on_which_triton_served_them(stack, sentences) -> None:
    """A restarted Triton (new process, new model instance) computes the same vectors."""
    triton, gateway, key = stack
    with authed_channel(gateway.address, key) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        first = vectors(stub.Embed(text_request(sentences)))
        triton.stop()
        triton.start()
        wait_for_health(gateway.address, SERVING, timeout=10)
        second = vectors(stub.Embed(text_request(sentences)))
    assert np.allclose(first, second, atol=1e-5)
