"""Health over plain HTTP on the metrics port (/readyz, /livez), for probes that speak no TLS: the
same answers as gRPC health, through start-up, serving, a blocked event loop, the drain and the
end of the process."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

from grpc_health.v1 import health_pb2

from devtools.launcher import free_port, health_status
from service.config import Settings
from service.metrics_port import LIVE_PATH, LIVENESS_TIMEOUT_S, READY_PATH
from service.server import Server

SERVING, NOT_SERVING = (
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


def get(port: int, path: str, method: str = "GET") -> int | None:
    """The HTTP status of `method` `path` on loopback, or None when nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return None


def body(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return bytes(reply.read())


def test_http_health_follows_start_up_the_event_loop_and_the_drain(
    tmp_path: Path, minilm_repo: Path
) -> None:
    metrics_port = free_port()
    settings = Settings(
        grpc_host="127.0.0.1", grpc_port=free_port(), metrics_port=metrics_port,
        model_repo=minilm_repo, data_dir=tmp_path,
    )  # fmt: skip
    seen: dict[str, object] = {}

    async def probe(path: str) -> int | None:
        return await asyncio.to_thread(get, metrics_port, path)

    async def scenario() -> None:
        server = Server(settings)
        await server.listen()
        address = f"127.0.0.1:{server.port}"
        # Listening, backbones not loaded: alive, not ready; gRPC health agrees.
        seen["loading"] = (await probe(READY_PATH), await probe(LIVE_PATH))
        seen["loading grpc"] = await asyncio.to_thread(health_status, address)
        await server.load()
        seen["serving"] = (await probe(READY_PATH), await probe(LIVE_PATH))
        seen["serving grpc"] = await asyncio.to_thread(health_status, address)
        seen["bodies"] = [
            await asyncio.to_thread(body, metrics_port, p) for p in (READY_PATH, "/metrics")
        ]
        seen["post"] = await asyncio.to_thread(get, metrics_port, READY_PATH, "POST")
        # A blocked event loop: /livez answers 503 once it is LIVENESS_TIMEOUT_S late.
        live = asyncio.get_running_loop().run_in_executor(None, get, metrics_port, LIVE_PATH)
        time.sleep(LIVENESS_TIMEOUT_S + 0.5)  # blocks the loop, as a wedged server would
        seen["blocked"] = await live
        seen["unblocked"] = await probe(LIVE_PATH)
        # SIGTERM's drain: not ready while still serving; alive to the end.
        stopping = asyncio.ensure_future(server.stop(drain_delay_s=1.5))
        await asyncio.sleep(0.5)
        seen["draining"] = (await probe(READY_PATH), await probe(LIVE_PATH))
        seen["draining grpc"] = await asyncio.to_thread(health_status, address)
        await stopping
        seen["stopped"] = await probe(READY_PATH)

    asyncio.run(scenario())
    assert seen["loading"] == (503, 200) and seen["loading grpc"] == NOT_SERVING
    assert seen["serving"] == (200, 200) and seen["serving grpc"] == SERVING
    ready, metrics = seen["bodies"]
    assert ready == b"ready\n" and b"# TYPE transferd_requests_total counter" in metrics
    assert seen["post"] == 405
    assert seen["blocked"] == 503 and seen["unblocked"] == 200
    assert seen["draining"] == (503, 200) and seen["draining grpc"] == NOT_SERVING
    assert seen["stopped"] is None  # the port is closed with the server
