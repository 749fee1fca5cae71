"""Keeps gRPC health in step with the server's readiness after start-up.

Readiness is whatever the server combines (`Server._ready`): every backbone can serve, and the
database file is still the one opened at start-up (see `service.store.database`).

An embedded backbone is ready from load to close, but a backbone on Triton becomes unready while
Triton is unreachable and ready again when it returns (TritonRuntime's own probe tracks that).
Health must follow, so that Kubernetes takes a gateway out of its Service while its backbones
cannot serve, and puts it back without a restart.

Liveness is another question: a gateway waiting for Triton is alive, and restarting it would not
bring Triton back. So the health service also answers for LIVENESS_SERVICE, which is SERVING from
the end of start-up for as long as the event loop runs (the aio health servicer answers from the
loop, so a wedged loop fails it); a liveness check asks for that name, a readiness check for the
server (""). Kubernetes' probes, which cannot speak TLS, ask the same over plain HTTP on the
metrics port instead (`service.metrics_port`: /livez, /readyz).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

# Readiness is a flag read and one os.stat; 4 times a second keeps health within a probe period.
POLL_INTERVAL_S = 0.25
# The health service name of liveness (the metrics port's /livez answers the same question).
LIVENESS_SERVICE = "liveness"


class HealthFollower:
    """Sets health SERVING or NOT_SERVING whenever `is_ready()` changes, until stopped.

    Args:
        is_ready: Whether the server can serve now (backbones ready, database intact); cheap,
            it is read 4 times a second.
        set_serving: Sets the health of the server and each service: SERVING or NOT_SERVING.
        servicer: The health servicer, which also answers for LIVENESS_SERVICE once started.
        interval_s: How often `is_ready` is read.
    """

    def __init__(
        self,
        is_ready: Callable[[], bool],
        set_serving: Callable[[bool], Awaitable[None]],
        servicer: health.aio.HealthServicer,
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._is_ready = is_ready
        self._set_serving = set_serving
        self._servicer = servicer
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self, serving: bool = True) -> None:
        """Starts following; `serving` is the status the server reports now."""
        self._task = asyncio.get_running_loop().create_task(
            self._follow(serving), name="health-follower"
        )

    async def _follow(self, serving: bool) -> None:
        await self._servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        while True:
            await asyncio.sleep(self._interval_s)
            ready = self._is_ready()
            if ready == serving:
                continue
            serving = ready
            if ready:
                log.info("ready again: health SERVING")
            else:
                log.warning(
                    "not ready (a backbone or the database cannot serve): health NOT_SERVING"
                )
            await self._set_serving(ready)

    async def stop(self) -> None:
        """Stops following (before draining, which sets NOT_SERVING for good; liveness stays)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
