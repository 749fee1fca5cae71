"""The gRPC front door: the aio server, its interceptor, the servicers (transferd.v1 and the Open
Inference Protocol v2), health and reflection.

The only place that knows the generated service stubs besides the servicers themselves;
`service.server` wires the domain objects and the lifecycle and hands them here.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from concurrent.futures import Executor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from service.api.decoding import RequestDecoder
from service.api.embedding import EmbeddingServicer
from service.api.heads import HeadServicer
from service.api.interceptors import GatewayInterceptor
from service.api.oip.servicer import InferenceServicer
from service.api.readiness import HealthFollower
from service.api.reflection import served_pool
from service.api.tenants import TenantServicer
from service.api.tls import TlsFiles
from service.backbones.embedder import Embedder
from service.jobs.manager import JobManager
from service.predictor import Predictor
from service.store.registry import HeadRegistry
from service.tenancy.deletion import TenantRemover
from service.tenancy.directory import TenantDirectory
from transferd.oip import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from transferd.v1 import (
    embedding_pb2,
    embedding_pb2_grpc,
    heads_pb2,
    heads_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)

SERVICE_NAMES = (
    embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
    heads_pb2.DESCRIPTOR.services_by_name["HeadService"].full_name,
    tenants_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
    # The Open Inference Protocol v2 (KServe, Triton): `inference.GRPCInferenceService`.
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)
# What reflection describes: the files of every service served (see `service.api.reflection`).
SERVED_FILES = (
    embedding_pb2.DESCRIPTOR,
    heads_pb2.DESCRIPTOR,
    tenants_pb2.DESCRIPTOR,
    grpc_predict_v2_pb2.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)

log = logging.getLogger(__name__)


class GrpcServer:
    """transferd's services on one gRPC port, with health following the server's readiness.

    Args:
        address: host:port to listen on (port 0: a free one; see `port`).
        decoder: Sizes, counts and decodes each RPC's raw request.
        transport: The pool that decodes large requests and encodes large replies.
        max_send_bytes: The largest reply.
        is_ready: Whether the server can serve now (health follows it after `follow_readiness`).
        tls: The port's certificates (None: plaintext).
    """

    def __init__(
        self,
        address: str,
        embedder: Embedder,
        jobs: JobManager,
        registry: HeadRegistry,
        predictor: Predictor,
        directory: TenantDirectory,
        decoder: RequestDecoder,
        transport: Executor,
        max_send_bytes: int,
        is_ready: Callable[[], bool],
        tls: TlsFiles | None = None,
        *,
        remover: TenantRemover,
    ) -> None:
        self._server = grpc.aio.server(
            interceptors=[GatewayInterceptor(directory, decoder, transport)],
            options=[
                # gRPC refuses anything larger than the largest method limit before we see it.
                ("grpc.max_receive_message_length", decoder.largest),
                ("grpc.max_send_message_length", max_send_bytes),
            ],
        )
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
            EmbeddingServicer(embedder, transport), self._server
        )
        heads_pb2_grpc.add_HeadServiceServicer_to_server(
            HeadServicer(embedder, jobs, registry, predictor, transport), self._server
        )
        tenants_pb2_grpc.add_TenantServiceServicer_to_server(
            TenantServicer(directory, remover), self._server
        )
        # What health says for the server (""), which the protocol's ServerReady answers too.
        self._serving = False
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(embedder, registry, predictor, transport, lambda: self._serving),
            self._server,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
            pool=served_pool(SERVED_FILES),
        )
        # After start-up, health follows the backbones (a Triton backbone goes down and back)
        # and the database file (removed or replaced: NOT_SERVING until a restart).
        self._follower = HealthFollower(is_ready, self.set_serving, self._health)
        if tls is not None:
            self.port = self._server.add_secure_port(address, tls.credentials())
            log.info(
                "gRPC on %s with TLS%s", address, " and client certificates" if tls.mutual else ""
            )
        else:
            self.port = self._server.add_insecure_port(address)
            if not _is_loopback(address):
                log.warning(
                    "gRPC on %s in plaintext: API keys cross the network readable; set "
                    "TRANSFERD_TLS_CERT_FILE and TRANSFERD_TLS_KEY_FILE (README: TLS)",
                    address,
                )

    @property
    def serving(self) -> bool:
        """What health says for the server now (True: SERVING); the metrics port's /readyz."""
        return self._serving

    async def set_serving(self, serving: bool) -> None:
        """Sets the health of the server and of each service."""
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def start(self) -> None:
        """Accepts connections (health as last set)."""
        await self._server.start()

    def follow_readiness(self) -> None:
        """From now on, health follows `is_ready` (and liveness answers SERVING)."""
        self._follower.start()

    async def stop_following(self) -> None:
        await self._follower.stop()

    async def stop(self, grace_s: float) -> None:
        """Stops accepting RPCs and gives those in flight `grace_s` to finish."""
        await self._server.stop(grace_s)


def _is_loopback(address: str) -> bool:
    """Whether host:port binds the loopback interface only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
