"""The gRPC server: wiring, start-up order, health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import metrics
from service.api.embedding import EmbeddingServicer
from service.api.interceptors import ErrorsAndMetricsInterceptor
from service.backbones.embedder import Embedder
from service.backbones.inputs import InputLimits
from service.backbones.loader import build_backbones
from service.config import Settings
from transferd.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,)
# Inputs may be up to max_inputs × max_text_bytes (and images later): raise gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Server:
    """transferd's gRPC server. `start()` listens at once; health says SERVING once backbones load."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._preprocess = ThreadPoolExecutor(
            max_workers=settings.effective_threads(settings.preprocess_threads),
            thread_name_prefix="preprocess",
        )
        limits = InputLimits(settings.max_inputs_per_request, settings.max_text_bytes)
        self.embedder = Embedder(build_backbones(settings), limits, self._preprocess)
        self.health = health.aio.HealthServicer()
        self._grpc = grpc.aio.server(
            interceptors=[ErrorsAndMetricsInterceptor()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
            EmbeddingServicer(self.embedder), self._grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc
        )
        self.port = self._grpc.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Listens (health NOT_SERVING), loads every backbone, then reports SERVING."""
        await self.listen()
        await self.load()

    async def listen(self) -> None:
        """Accepts connections; health answers NOT_SERVING until `load` is done."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._grpc.start()
        log.info("gRPC listening on %s:%d; loading backbones", self.settings.grpc_host, self.port)
        metrics.start_metrics_server(self.settings.metrics_port, self.settings.grpc_host)

    async def load(self) -> None:
        """Loads every backbone, then reports SERVING."""
        await self.embedder.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        names = ", ".join(b.card.name for b in self.embedder.served())
        log.info("SERVING backbones: %s", names)

    async def stop(self, drain_delay_s: float = 0.0) -> None:
        """Drains: NOT_SERVING first while still serving (load balancers stop sending), then
        stops accepting and gives in-flight requests a grace period."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if drain_delay_s:
            log.info("NOT_SERVING; still serving for %.1fs", drain_delay_s)
            await asyncio.sleep(drain_delay_s)
        log.info("draining for up to %.1fs", self.settings.shutdown_grace_s)
        await self._grpc.stop(self.settings.shutdown_grace_s)
        await self.embedder.close()
        self._preprocess.shutdown(wait=False)
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Runs the server until SIGTERM or SIGINT, then shuts down gracefully."""
    server = Server(settings)
    received: asyncio.Future[signal.Signals] = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda s=sig: received.done() or received.set_result(s)
        )
    await server.start()
    sig = await received
    log.info("received %s", sig.name)
    # Orchestrators send SIGTERM and wait; a person at a terminal pressing Ctrl-C should not.
    await server.stop(settings.drain_delay_s if sig is signal.SIGTERM else 0.0)
