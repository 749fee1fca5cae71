"""The server: wires the domain (backbones, store, jobs, tenants) to the gRPC front door, and
owns the start-up order and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service import tracing
from service.api.decoding import RequestDecoder
from service.api.grpc_server import GrpcServer
from service.api.request_limits import SMALL, largest_input_bytes, method_limits
from service.api.tls import TlsFiles
from service.backbones.embedder import Embedder
from service.backbones.embedding_cache import EmbeddingCache
from service.backbones.inputs import InputLimits
from service.backbones.loader import build_backbones
from service.config import Settings
from service.jobs.manager import JobLimits, JobManager
from service.jobs.validation import TrainingLimits
from service.metrics_port import Health, MetricsPort, start_metrics_port
from service.predictor import Predictor
from service.store.changes import ChangeFeed
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.recovery import StoreNeedsRepair, check_before_open
from service.store.registry import HeadQuotas, HeadRegistry
from service.tenancy.deletion import TenantRemover
from service.tenancy.directory import TenantDirectory

log = logging.getLogger(__name__)


class Server:
    """transferd's gRPC server. `start()` listens at once; health says SERVING once backbones load."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Traces when OTEL_EXPORTER_OTLP_ENDPOINT asks for them (service/tracing), before
        # anything makes a span; otherwise nothing of OpenTelemetry is imported.
        self._tracing = tracing.start_from_env(os.environ)
        # Read first: an unreadable certificate stops start-up before any model is loaded.
        self._tls = (
            None
            if settings.tls_cert_file is None or settings.tls_key_file is None
            else TlsFiles(
                settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
            )
        )
        self._preprocess = ThreadPoolExecutor(
            max_workers=settings.effective_threads(settings.preprocess_threads),
            thread_name_prefix="preprocess",
        )
        # Heads are small: predictions and head loading get their own pool, so that they never
        # wait behind a training job's fit, which has its own.
        self._heads_pool = ThreadPoolExecutor(
            max_workers=settings.effective_threads(0), thread_name_prefix="heads"
        )
        # Decoding large requests and encoding large replies: off the event loop, and bounded so
        # that many large requests queue here instead of each holding a decoded copy at once.
        self._transport_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="transport")
        # None on an API-only replica (no workers): it queues jobs and runs none.
        self._training_pool = (
            ThreadPoolExecutor(max_workers=settings.training_workers, thread_name_prefix="training")
            if settings.training_workers
            else None
        )
        limits = InputLimits(settings.max_inputs_per_request, settings.max_text_bytes)
        self.embedder = Embedder(
            build_backbones(settings, self._preprocess),
            limits,
            EmbeddingCache(int(settings.embedding_cache_mb * 1024 * 1024)),
        )
        url = settings.database_url.get_secret_value() if settings.database_url else None
        if url is None:
            # A missing database beside existing heads is refused before anything is created.
            check_before_open(settings.data_dir)
        self.db = Database(settings.data_dir, url)
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        if not admin:
            log.warning("TRANSFERD_ADMIN_KEY is not set: TenantService refuses every call")
        if not settings.training_workers and not self.db.is_postgres:
            log.warning(
                "TRANSFERD_TRAINING_WORKERS=0 on SQLite: training jobs are queued and none runs "
                "(no other replica can share this file); set it above 0, or use PostgreSQL"
            )
        # Heads published or deleted and keys revoked, here and on every other replica.
        self.changes = ChangeFeed(self.db, settings.change_poll_s)
        self.directory = TenantDirectory(
            self.db, admin, self.changes, max_keys_per_tenant=settings.max_keys_per_tenant
        )
        self.registry = HeadRegistry(
            self.db, HeadFiles(settings.data_dir), settings.head_cache_size, self._heads_pool,
            cache_bytes=int(settings.head_cache_mb * 1024 * 1024),
            quotas=HeadQuotas(settings.max_heads_per_tenant, settings.max_versions_per_head),
            changes=self.changes,
        )  # fmt: skip
        try:
            self.registry.sweep_unpublished()
        except StoreNeedsRepair:
            self.db.close()  # cleanly: SQLite removes its -wal, nothing stays beside the file
            raise
        self.jobs = JobManager(
            self.db, self.embedder, self.registry, self._training_pool,
            JobLimits(
                workers=settings.training_workers,
                max_jobs_per_tenant=settings.max_jobs_per_tenant,
                max_jobs_total=settings.max_jobs_total,
                embed_chunk=min(64, settings.max_inputs_per_request),
                timeout_s=settings.job_timeout_s,
                lease_s=settings.job_lease_s,
                max_attempts=settings.job_max_attempts,
                max_payload_bytes=int(settings.max_job_payload_mb * 2**20),
                payload_retention_s=settings.job_payload_retention_s,
                training=TrainingLimits(
                    max_examples_per_job=settings.max_examples_per_job,
                    max_label_bytes=settings.max_label_bytes,
                    max_labels_per_head=settings.max_labels_per_head,
                    cost_caps=settings.job_cost_caps,
                ),
            ),
        )  # fmt: skip
        self.jobs.recover()
        predictor = Predictor(
            self.embedder, self.registry, self._heads_pool, settings.max_response_bytes
        )
        decoder = RequestDecoder(
            self._transport_pool,
            method_limits(
                settings, largest_input_bytes(settings, [b.card for b in self.embedder.served()])
            ),
            SMALL,
        )
        self._grpc = GrpcServer(
            f"{settings.grpc_host}:{settings.grpc_port}",
            self.embedder, self.jobs, self.registry, predictor, self.directory,
            decoder, self._transport_pool, settings.max_response_bytes, self._ready, self._tls,
            remover=TenantRemover(self.db, self.changes, self.jobs, self.registry),
        )  # fmt: skip
        self.port = self._grpc.port
        self._metrics_port: MetricsPort | None = None

    def _ready(self) -> bool:
        """Every backbone can serve, and the database file is still the one opened (SQLite).

        A PostgreSQL outage does not make a replica unready: Embed needs no database, and
        Predict and authentication keep serving from the caches; calls that need the database
        answer UNAVAILABLE meanwhile. Taking every replica out of the Service at once would turn
        a database blip into a full outage."""
        return self.embedder.is_ready() and self.db.intact()

    async def start(self) -> None:
        """Listens (health NOT_SERVING), loads every backbone, then reports SERVING."""
        await self.listen()
        await self.load()

    async def listen(self) -> None:
        """Accepts connections; health answers NOT_SERVING until `load` is done."""
        # Metrics first: a port another replica holds stops start-up before gRPC listens. It
        # answers health over plain HTTP too (/readyz, /livez), for probes that speak no TLS.
        health = Health(lambda: self._grpc.serving, asyncio.get_running_loop())
        self._metrics_port = start_metrics_port(
            self.settings.metrics_port, self.settings.grpc_host, health
        )
        await self._grpc.set_serving(False)
        await self.changes.start()
        self.directory.usage.start()
        await self._grpc.start()
        log.info("gRPC listening on %s:%d; loading backbones", self.settings.grpc_host, self.port)

    async def load(self) -> None:
        """Loads every backbone, then reports SERVING."""
        await self.embedder.start()
        self.jobs.start()  # claims jobs only once it can embed their examples
        await self._grpc.set_serving(True)
        self._grpc.follow_readiness()
        names = ", ".join(b.card.name for b in self.embedder.served())
        log.info("SERVING backbones: %s", names)

    async def stop(self, drain_delay_s: float = 0.0) -> None:
        """Drains: NOT_SERVING first while still serving (load balancers stop sending), then
        stops accepting and gives in-flight requests a grace period."""
        await self._grpc.stop_following()
        await self._grpc.set_serving(False)
        if drain_delay_s:
            log.info("NOT_SERVING; still serving for %.1fs", drain_delay_s)
            await asyncio.sleep(drain_delay_s)
        log.info("draining for up to %.1fs", self.settings.shutdown_grace_s)
        # Stop accepting RPCs, and meanwhile hand the jobs running here back to the queue (another
        # replica, or this one after its restart, runs them) and end their WatchJob streams,
        # instead of holding the grace period.
        stopping = asyncio.ensure_future(self._grpc.stop(self.settings.shutdown_grace_s))
        await self.jobs.close()
        await stopping
        await self.directory.usage.stop()
        await self.changes.stop()
        await self.embedder.close()
        for pool in (self._preprocess, self._heads_pool, self._training_pool, self._transport_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self.db.close()
        if self._metrics_port is not None:  # last: probes see the drain to its end
            await asyncio.to_thread(self._metrics_port.close)
            self._metrics_port = None
        if self._tracing:  # the spans still buffered, those of the drain included
            await asyncio.to_thread(tracing.shutdown)
        log.info("stopped")


async def serve(settings: Settings) -> None:
    """Runs the server until SIGTERM or SIGINT, then shuts down gracefully."""
    server = Server(settings)
    received: asyncio.Future[signal.Signals] = asyncio.get_running_loop().create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, on_signal, sig)
    # Start-up may wait long (a Triton that is not ready yet): a signal must not wait for it.
    starting = asyncio.ensure_future(server.start())
    either: list[asyncio.Future[Any]] = [starting, received]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("received %s while starting; stopping", received.result().name)
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await server.stop()
        return
    if starting.exception() is not None:
        # A backbone that cannot load (a missing CUDA provider, a model that does not match its
        # card): stop what already runs (gRPC listens by now) before the error ends the process.
        await server.stop()
        starting.result()
    sig = await received
    log.info("received %s", sig.name)
    # Orchestrators send SIGTERM and wait; a person at a terminal pressing Ctrl-C should not.
    await server.stop(settings.drain_delay_s if sig is signal.SIGTERM else 0.0)
