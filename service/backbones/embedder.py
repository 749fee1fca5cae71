"""The Embedder: validated inputs in, embeddings out, for every served backbone.

Protocol-free: the servicers, the training jobs and Predict call it with domain inputs.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service import metrics
from service.backbones.card import BackboneCard
from service.backbones.image import ImagePreprocessor
from service.backbones.inputs import Input, InputLimits, check_count, check_image, check_text
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor
from service.errors import InvalidArgument


@dataclass
class ServedBackbone:
    """A backbone ready to serve: its card, its preprocessing and the runtime that runs it."""

    card: BackboneCard
    runtime: BackboneRuntime
    text: TextPreprocessor | None = None  # text backbones
    image: ImagePreprocessor | None = None  # image backbones


@dataclass(frozen=True)
class EmbedResult:
    card: BackboneCard
    vectors: np.ndarray  # float32 (n, dim), one row per input in request order
    truncated_to: list[int]  # per input: tokens kept when a text was cut, else 0


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

    def check_input(self, served: ServedBackbone, item: Input, where: str) -> None:
        """Cheap checks of one input against the backbone's modality and the limits (no decoding).

        Raises:
            InvalidArgument: naming `where`, e.g. ``examples[3].input.text``.
        """
        if served.image is not None:
            served.image.check(check_image(item, served.card.name, where), where)
        else:
            check_text(item, served.card.name, self._limits.max_text_bytes, where)

    async def embed(
        self,
        backbone: str,
        inputs: list[Input],
        field: str = "inputs",
        wheres: list[str] | None = None,
    ) -> EmbedResult:
        """Embeds `inputs` with `backbone`.

        Args:
            backbone: A served backbone's name.
            inputs: Texts for a text backbone, images for an image backbone.
            field: The request field holding the inputs (for the count error).
            wheres: How errors name each input (default ``field[i]``); callers that embed a
                part of a request pass the positions in the whole request.

        Raises:
            InvalidArgument: unknown backbone, or a bad input (named by index).
            ResourceExhausted: the backbone's queue is full.
            Unavailable: the runtime is down.
        """
        served = self.get(backbone)
        check_count(inputs, self._limits, field)
        wheres = wheres or [f"{field}[{index}]" for index in range(len(inputs))]
        for item, where in zip(inputs, wheres, strict=True):
            self.check_input(served, item, where)
        loop = asyncio.get_running_loop()
        if served.image is not None:
            decode = served.image.decode
            # One task per image: decoding runs in parallel, off the event loop (Pillow releases
            # the GIL while it decodes).
            items = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        self._preprocess, decode, check_image(item, "", where), where
                    )
                    for item, where in zip(inputs, wheres, strict=True)
                )
            )
            truncated = [0] * len(items)
        else:
            assert served.text is not None, "a backbone is either text or image"
            texts = [item.text for item in inputs]  # type: ignore[union-attr] - checked above
            tokenized = await loop.run_in_executor(self._preprocess, served.text.tokenize, texts)
            truncated = [item.length if item.truncated else 0 for item in tokenized]
            items = tokenized
        vectors = await served.runtime.embed(list(items))
        metrics.EMBEDDED_INPUTS.labels(backbone=served.card.name).inc(len(items))
        return EmbedResult(served.card, vectors, truncated)
