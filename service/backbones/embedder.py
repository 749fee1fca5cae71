"""The Embedder: validated inputs in, embeddings out, for every served backbone.

Protocol-free: servicers (embedding now, heads later) call it with domain inputs.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service import metrics
from service.backbones.card import BackboneCard
from service.backbones.inputs import Input, InputLimits, texts_for_backbone
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor
from service.errors import InvalidArgument


@dataclass
class ServedBackbone:
    """A backbone ready to serve: its card, its preprocessing and the runtime that runs it."""

    card: BackboneCard
    runtime: BackboneRuntime
    text: TextPreprocessor | None = None


@dataclass(frozen=True)
class EmbedResult:
    card: BackboneCard
    vectors: np.ndarray  # float32 (n, dim), one row per input in request order
    truncated_to: list[int]  # per input: tokens kept when the text was cut, else 0


class Embedder:
    """Validates, preprocesses off the event loop, and embeds through the backbone's runtime."""

    def __init__(
        self,
        backbones: dict[str, ServedBackbone],
        limits: InputLimits,
        preprocess_executor: Executor,
    ) -> None:
        self._backbones = backbones
        self._limits = limits
        self._preprocess = preprocess_executor

    @property
    def limits(self) -> InputLimits:
        return self._limits

    def served(self) -> list[ServedBackbone]:
        return [self._backbones[name] for name in sorted(self._backbones)]

    def get(self, name: str, field: str = "backbone") -> ServedBackbone:
        """The served backbone called `name`, or InvalidArgument naming `field`."""
        if not name:
            raise InvalidArgument(field, "is required; ListBackbones lists the choices")
        try:
            return self._backbones[name]
        except KeyError:
            known = ", ".join(sorted(self._backbones))
            raise InvalidArgument(field, f"unknown backbone '{name}' (served: {known})") from None

    async def start(self) -> None:
        """Loads every backbone; returns only when all of them can serve."""
        await asyncio.gather(*(b.runtime.start() for b in self._backbones.values()))

    def is_ready(self) -> bool:
        return all(b.runtime.is_ready() for b in self._backbones.values())

    async def close(self) -> None:
        await asyncio.gather(*(b.runtime.close() for b in self._backbones.values()))

    async def embed(self, backbone: str, inputs: list[Input], field: str = "inputs") -> EmbedResult:
        """Embeds `inputs` with `backbone`.

        Raises:
            InvalidArgument: unknown backbone, or a bad input (named by index).
            ResourceExhausted: the backbone's queue is full.
            Unavailable: the runtime is down.
        """
        served = self.get(backbone)
        texts = texts_for_backbone(inputs, served.card.name, self._limits, field)
        assert served.text is not None, "text backbones always have a tokenizer"
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(self._preprocess, served.text.tokenize, texts)
        vectors = await served.runtime.embed(items)
        metrics.EMBEDDED_INPUTS.labels(backbone=served.card.name).inc(len(items))
        truncated = [item.length if item.truncated else 0 for item in items]
        return EmbedResult(served.card, vectors, truncated)
