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
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._grpc.start()
        log.info("gRPC listening on %s:%d; loading backbones", self.settings.grpc_host, self.port)
        metrics.start_metrics_server(self.settings.metrics_port, self.settings.grpc_host)
        await self.embedder.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        names = ", ".join(b.card.name for b in self.embedder.served())
        log.info("SERVING backbones: %s", names)

    async def stop(self) -> None:
        """Drains: NOT_SERVING first (load balancers stop sending), then a grace period."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("draining for up to %.1fs", self.settings.shutdown_grace_s)
        await self._grpc.stop(self.settings.shutdown_grace_s)
        await self.embedder.close()
        self._preprocess.shutdown(wait=False)
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Runs the server until SIGTERM or SIGINT, then shuts down gracefully."""
    server = Server(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await server.start()
    await stopping.wait()
    await server.stop()
