"""EmbeddedRuntime: the backbone's ONNX model in-process on ONNX Runtime, fed by the fair batcher."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service import metrics
from service.backbones.batcher import FairBatcher
from service.backbones.card import BackboneCard, model_path
from service.backbones.modalities.base import Modality
from service.backbones.runtimes.base import BackboneLoadError, RuntimeNeeds
from service.backbones.runtimes.device import (
    CPU_PROVIDER,
    Placement,
    choose_placement,
    confirm_placement,
    run_bound,
)
from service.backbones.runtimes.warm_up import warm_up
from service.config import Device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedOptions:
    """How the embedded runtime runs (from Settings).

    Attributes:
        threads: ONNX Runtime's intra-op threads.
        lanes: Inference calls at once (one per tenant, another tenant's beside it).
        max_batch_size: Items of one call.
        max_batch_tokens: Padded tokens of one text call.
        max_wait_s: How long an idle batcher waits for more work before the first call.
        device: Where sessions run (`TRANSFERD_DEVICE`; runtimes/device.py).
    """

    threads: int
    lanes: int
    max_batch_size: int
    max_batch_tokens: int
    max_wait_s: float
    device: Device = Device.CPU


def make_session(
    onnx_file: Path, threads: int, providers: list[str] | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session sized to the machine, on `providers` (default: the CPU).

    Its intra-op pool may use every core: one tenant's calls run one at a time, and a call of
    another tenant beside it shares the pool (ONNX Runtime runs concurrent calls of one session
    safely). Spinning is turned off so idle inference threads do not steal the cores that
    tokenization and gRPC need between calls.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=providers or [CPU_PROVIDER])


def check_session_matches_card(session: ort.InferenceSession, card: BackboneCard) -> None:
    """Refuses a model whose inputs or output differ from what the card promises."""
    inputs = [i.name for i in session.get_inputs()]
    if inputs != card.input_names:
        raise BackboneLoadError(f"{card.name}: model inputs {inputs} != card {card.input_names}")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if card.output_name not in outputs or outputs[card.output_name][-1] != card.dim:
        raise BackboneLoadError(f"{card.name}: model outputs {outputs} do not give dim {card.dim}")


class EmbeddedRuntime:
    """Runs a backbone in this process: one inference call at a time per tenant, in lanes.

    Calls are built by a FairBatcher from the tenants' queues in turn, so a call is never longer
    than one full batch; while one tenant's call runs, another tenant's call takes a free lane.
    """

    kind = "embedded"

    def __init__(
        self, card: BackboneCard, folder: Path, modality: Modality, options: EmbeddedOptions
    ) -> None:
        self.card = card
        self._folder = folder
        self._threads = options.threads
        self._device = options.device
        self._placement: Placement | None = None  # chosen when the session is loaded
        self.needs = RuntimeNeeds(
            max_batch_size=lambda: options.max_batch_size,
            full_call_items=options.max_batch_size,
            max_batch_tokens=options.max_batch_tokens,
            bucketed=False,
            merges=True,
        )
        self._batching = modality.batching(self.needs)
        self._session: ort.InferenceSession | None = None
        # ONNX Runtime parallelises inside one call. Each tenant has at most one call running;
        # the other lanes let a small request of another tenant run beside a long call (measured:
        # a 1-text call took 13 ms beside a 32 x 256-token call, 5.6 ms alone, where it used to
        # wait for the whole long call).
        self._executor = ThreadPoolExecutor(
            max_workers=options.lanes, thread_name_prefix=f"ort-{card.name}"
        )
        self._batcher: FairBatcher[Any, np.ndarray] = FairBatcher(
            card.name,
            self._run_call,
            self._batching.calls,
            max_in_flight=options.lanes,
            one_call_per_tenant=True,
            max_wait_s=options.max_wait_s,
            fill_items=options.max_batch_size,
            # A tenant's concurrent requests are planned together, as one round used to be.
            coalesce_items=4 * options.max_batch_size,
        )
        self._batch_size = metrics.BATCH_SIZE.labels(backbone=card.name)
        self._latency = metrics.INFERENCE_LATENCY.labels(backbone=card.name, runtime=self.kind)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._session = await loop.run_in_executor(self._executor, self._load)
        await warm_up(self.card.name, self._batching.warm_up(), self._run_call)
        self._batcher.start()
        metrics.BACKBONE_READY.labels(backbone=self.card.name, runtime=self.kind).set(1)

    def _load(self) -> ort.InferenceSession:
        placement = choose_placement(self._device, self.card)
        session = make_session(model_path(self._folder), self._threads, placement.providers)
        check_session_matches_card(session, self.card)
        self._placement = confirm_placement(placement, self._device, session, self.card)
        return session

    def is_ready(self) -> bool:
        return self._session is not None

    async def embed(
        self, items: list[Any], tenant: str, deadline: float | None = None
    ) -> np.ndarray:
        rows = await self._batcher.submit(tenant, items, deadline)
        return np.stack(rows).astype(np.float32, copy=False)

    async def _run_call(self, items: list[Any]) -> list[np.ndarray]:
        rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, items)
        return list(rows)  # one row per item, as the batcher hands them back

    def _infer(self, items: list[Any]) -> np.ndarray:
        """One inference call over the items the batcher chose."""
        assert self._session is not None and self._placement is not None
        feed = self._batching.collate(items)
        started = time.perf_counter()
        if self._placement.on_cuda:
            rows = run_bound(self._session, feed, self.card.output_name, "cuda")
        else:
            (rows,) = self._session.run([self.card.output_name], feed)
        self._latency.observe(time.perf_counter() - started)
        self._batch_size.observe(len(items))
        return rows

    async def close(self) -> None:
        await self._batcher.close()
        self._executor.shutdown(wait=True)
        self._session = None
        metrics.BACKBONE_READY.labels(backbone=self.card.name, runtime=self.kind).set(0)
