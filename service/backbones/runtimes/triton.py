"""TritonRuntime: a backbone served by NVIDIA Triton Inference Server, called over gRPC.

Batching is Triton's job here (`dynamic_batching` in config.pbtxt merges the calls of every
gateway replica), so the gateway never merges requests: each Embed request is cut into calls of
at most the model's `max_batch_size`, padded to length buckets so that Triton can merge them
(see `triton_batches`). The calls wait in the fair batcher's per-tenant queues and are sent in
turn, `max_calls_in_flight` at a time: a tenant's large request cannot fill Triton's queue ahead
of another tenant's small one, and calls whose request was cancelled or expired are never sent.
The Embedder above it (and its admission gate) does not know which runtime runs.

Failure handling, so that the gateway rides out a Triton restart without one of its own:
  * start-up waits (bounded) for the model to be ready, then checks its metadata against the card;
  * a background probe keeps `is_ready()` (and so gRPC health) current while Triton is down;
  * every call has a deadline; UNAVAILABLE is retried with exponential backoff and jitter, then
    answered as `Unavailable`; the gRPC channel reconnects within about a second once Triton is
    back, and the metadata is checked again before the backbone reports ready.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service import metrics
from service.backbones.batcher import FairBatcher
from service.backbones.card import BackboneCard
from service.backbones.modalities.base import Modality
from service.backbones.runtimes.base import BackboneLoadError, RuntimeNeeds
from service.backbones.runtimes.triton_contract import check_metadata
from service.backbones.runtimes.warm_up import warm_up
from service.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

# Triton's gRPC status codes, as tritonclient reports them (str(grpc.StatusCode.X)).
UNAVAILABLE = "StatusCode.UNAVAILABLE"
DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"
RESOURCE_EXHAUSTED = "StatusCode.RESOURCE_EXHAUSTED"
NOT_FOUND = "StatusCode.NOT_FOUND"
# Text calls of 64 x 256 int64 are 128 KiB, image calls of 64 x 224 x 224 x 3 uint8 about 10 MiB;
# gRPC's default is 4 MiB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TritonOptions:
    """How the gateway talks to Triton (from Settings)."""

    url: str
    timeout_s: float
    retries: int
    retry_backoff_s: float
    probe_interval_s: float
    startup_timeout_s: float
    max_calls_in_flight: int
    full_call_items: int  # items of a full call for the tenants' turns, before Triton reports
    # Most padded tokens (sequences x bucket length) of one call the gateway sends; Triton's own
    # dynamic batcher may still merge calls up to the model's max_batch_size.
    max_batch_tokens: int | None = None


def channel_args() -> list[tuple[str, Any]]:
    """gRPC channel options: large messages, and reconnection within a second of Triton's return.

    gRPC's default reconnect backoff grows to two minutes; a gateway would then keep answering
    UNAVAILABLE long after Triton is back. No keepalive pings: Triton's server refuses frequent
    ones by default (GOAWAY "too_many_pings").
    """
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


class TritonRuntime:
    """Runs a backbone on Triton. Requests are split, padded to buckets and sent in turn."""

    kind = "triton"

    def __init__(self, card: BackboneCard, modality: Modality, options: TritonOptions) -> None:
        self.card = card
        self._tensors = modality.tensors()
        self._options = options
        self.needs = RuntimeNeeds(
            # Read when a request is planned: Triton reports it at start-up and on its return.
            max_batch_size=lambda: self._max_batch_size,
            full_call_items=options.full_call_items,
            max_batch_tokens=options.max_batch_tokens,
            bucketed=True,
            merges=False,  # Triton's dynamic batcher merges calls, from every gateway replica
        )
        self._batching = modality.batching(self.needs)
        self._client: triton.InferenceServerClient | None = None
        self._max_batch_size = 0
        self._ready = False
        self._mismatch = ""  # the last metadata mismatch logged, so it is logged once
        self._probe: asyncio.Task[None] | None = None
        self._batcher: FairBatcher[Any, np.ndarray] = FairBatcher(
            card.name, self._infer, self._batching.calls, max_in_flight=options.max_calls_in_flight
        )
        self._ready_gauge = metrics.BACKBONE_READY.labels(backbone=card.name, runtime=self.kind)
        self._latency = metrics.INFERENCE_LATENCY.labels(backbone=card.name, runtime=self.kind)
        self._batch_size = metrics.BATCH_SIZE.labels(backbone=card.name)

    @property
    def max_batch_size(self) -> int:
        """The model's max_batch_size as Triton reported it (0 before start)."""
        return self._max_batch_size

    async def start(self) -> None:
        """Waits for the model to be ready on Triton, checks its metadata, starts the probe.

        Raises:
            BackboneLoadError: Triton stays unreachable or the model unready for
                `startup_timeout_s`, or the model does not match the card.
        """
        self._client = triton.InferenceServerClient(self._options.url, channel_args=channel_args())
        deadline = time.monotonic() + self._options.startup_timeout_s
        reason = await self._model_unready_reason()
        logged = None
        while reason is not None:
            if time.monotonic() >= deadline:
                raise BackboneLoadError(
                    f"{self.card.name}: Triton at {self._options.url} not ready after "
                    f"{self._options.startup_timeout_s:g}s ({reason})"
                )
            if reason != logged:  # once per reason, not once per probe
                log.info(
                    "%s: waiting for Triton at %s (%s)", self.card.name, self._options.url, reason
                )
                logged = reason
            await asyncio.sleep(self._options.probe_interval_s)
            reason = await self._model_unready_reason()
        await self._check_model()
        await warm_up(self.card.name, self._batching.warm_up(), self._infer)
        self._set_ready(True)
        self._batcher.start()
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_loop(), name=f"triton-probe-{self.card.name}"
        )

    async def _model_unready_reason(self) -> str | None:
        """None when the model is ready on Triton, else why not."""
        assert self._client is not None
        try:
            ready = await self._client.is_model_ready(
                self.card.name, client_timeout=self._probe_timeout()
            )
        except InferenceServerException as error:
            return f"{error.status() or 'error'}: {error.message()}"
        return None if ready else "model not ready"

    def _probe_timeout(self) -> float:
        return min(self._options.timeout_s, max(0.5, self._options.probe_interval_s))

    async def _check_model(self) -> None:
        """Reads the model's metadata and config from Triton and checks them against the card."""
        assert self._client is not None
        timeout = self._options.timeout_s
        try:
            meta = await self._client.get_model_metadata(self.card.name, client_timeout=timeout)
            config = await self._client.get_model_config(self.card.name, client_timeout=timeout)
        except InferenceServerException as error:
            raise BackboneLoadError(
                f"{self.card.name}: cannot read its metadata from Triton: {error.message()}"
            ) from error
        check_metadata(self.card, self._tensors, meta, config.config.max_batch_size)
        self._max_batch_size = config.config.max_batch_size

    async def _probe_loop(self) -> None:
        """Keeps readiness current until cancelled, whatever one probe raises."""
        while True:
            await asyncio.sleep(self._options.probe_interval_s)
            try:
                await self._probe_once()
            except Exception:  # a dead probe would freeze health: log, stay unready, go on
                log.exception("%s: readiness probe failed", self.card.name)
                self._set_ready(False, "probe failed")

    async def _probe_once(self) -> None:
        """One probe; when Triton is back, checks the model again before reporting ready."""
        reason = await self._model_unready_reason()
        if reason is not None:
            self._set_ready(False, reason)
            return
        if self._ready:
            return
        try:
            await self._check_model()
        except BackboneLoadError as error:
            # Stays unready: serving another model's vectors would corrupt every head.
            if str(error) != self._mismatch:
                log.error("%s: Triton's model cannot be served: %s", self.card.name, error)
                self._mismatch = str(error)
            return
        self._mismatch = ""
        self._set_ready(True)

    def _set_ready(self, ready: bool, reason: str = "") -> None:
        """Records readiness; logs each change once (not every probe while Triton stays down)."""
        if ready and not self._ready:
            log.info("%s: ready on Triton at %s", self.card.name, self._options.url)
        elif not ready and self._ready:
            log.warning("%s: unavailable on Triton (%s)", self.card.name, reason)
        self._ready = ready
        self._ready_gauge.set(1 if ready else 0)

    def is_ready(self) -> bool:
        return self._ready

    async def embed(
        self, items: list[Any], tenant: str, deadline: float | None = None
    ) -> np.ndarray:
        """Embeds items through Triton: planned calls, sent in the tenant's turn.

        Raises:
            Unavailable: Triton is down, did not answer within the timeout, or the deadline
                passed before the calls were sent.
        """
        rows = await self._batcher.submit(tenant, items, deadline)
        return np.stack(rows).astype(np.float32, copy=False)

    async def _infer(self, items: list[Any]) -> list[np.ndarray]:
        """One Triton call with retries on UNAVAILABLE (exponential backoff with full jitter).

        Not gRPC's own retry policy: it caps attempts at 5 (TRANSFERD_TRITON_RETRIES allows 10),
        its deadline spans every attempt where ours is per attempt, and a failure must also mark
        the backbone unready at once (`_translate`).
        """
        assert self._client is not None
        inputs = []
        for name, array in self._batching.collate(items).items():
            tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput(self.card.output_name)]
        backoff = self._options.retry_backoff_s
        for attempt in range(self._options.retries + 1):
            started = time.perf_counter()
            try:
                result = await self._client.infer(
                    self.card.name,
                    inputs,
                    outputs=outputs,
                    client_timeout=self._options.timeout_s,
                )
            except InferenceServerException as error:
                if error.status() == UNAVAILABLE and attempt < self._options.retries:
                    await asyncio.sleep(random.uniform(0, backoff))
                    backoff *= 2
                    continue
                raise self._translate(error) from error
            self._latency.observe(time.perf_counter() - started)
            self._batch_size.observe(len(items))
            rows = result.as_numpy(self.card.output_name)
            if rows is None or rows.shape != (len(items), self.card.dim):
                raise RuntimeError(
                    f"{self.card.name}: Triton returned shape {getattr(rows, 'shape', None)}"
                )
            return list(rows)  # one row per item, as the batcher hands them back
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _translate(self, error: InferenceServerException) -> Exception:
        """Triton's status codes as the service's error kinds (details stay in the log)."""
        status = error.status()
        name = self.card.name
        if status in (UNAVAILABLE, NOT_FOUND):
            self._set_ready(False, error.message())  # health says so now, not at the next probe
            return Unavailable(
                f"backbone '{name}' is unavailable (Triton is unreachable); retry later"
            )
        if status == DEADLINE_EXCEEDED:
            return Unavailable(
                f"backbone '{name}' did not answer within {self._options.timeout_s:g}s; retry later"
            )
        if status == RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"backbone '{name}' is overloaded on Triton; retry later")
        log.error("%s: Triton failed: %s %s", name, status, error.message())
        return RuntimeError(f"Triton failed: {status}")

    async def close(self) -> None:
        await self._batcher.close()
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._ready = False
        self._ready_gauge.set(0)
