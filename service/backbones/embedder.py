"""The Embedder: validated inputs in, embeddings out, for every served backbone.

Protocol-free: the servicers, the training jobs and Predict call it with domain inputs.

The order of work bounds what a request costs before it is paid: cheap checks, then admission
(the tenant's share of the backbone, in tokens or pixels estimated from the raw inputs), then
tokenizing (text pool) or decoding (image pool, tenants in turn), then the runtime's fair batcher.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import metrics, request_context
from service.backbones.admission import AdmissionGate, calling_tenant, text_tokens_bound
from service.backbones.card import BackboneCard
from service.backbones.image import ImagePreprocessor
from service.backbones.image_decoding import ImageDecoder
from service.backbones.inputs import (
    Input,
    InputLimits,
    check_count,
    check_image,
    check_text,
)
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor
from service.errors import InvalidArgument, shown


@dataclass
class ServedBackbone:
    """A backbone ready to serve: its card, its preprocessing and the runtime that runs it."""

    card: BackboneCard
    runtime: BackboneRuntime
    admission: AdmissionGate  # the tenants' shares of this backbone
    text: TextPreprocessor | None = None  # text backbones
    image: ImagePreprocessor | None = None  # image backbones
    decoder: ImageDecoder | None = None  # image backbones: the image pool, tenants in turn


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
            raise InvalidArgument(
                field, f"unknown backbone {shown(name)} (served: {known})"
            ) from None

    async def start(self) -> None:
        """Loads every backbone; returns only when all of them can serve."""
        for served in self._backbones.values():
            if served.decoder is not None:
                served.decoder.start()
        await asyncio.gather(*(b.runtime.start() for b in self._backbones.values()))

    def is_ready(self) -> bool:
        return all(b.runtime.is_ready() for b in self._backbones.values())

    async def close(self) -> None:
        decoders = [b.decoder for b in self._backbones.values() if b.decoder is not None]
        await asyncio.gather(
            *(b.runtime.close() for b in self._backbones.values()),
            *(decoder.close() for decoder in decoders),
        )

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
        *,
        tenant: str | None = None,
    ) -> EmbedResult:
        """Embeds `inputs` with `backbone`.

        Args:
            backbone: A served backbone's name.
            inputs: Texts for a text backbone, images for an image backbone.
            field: The request field holding the inputs (for the count error).
            wheres: How errors name each input (default ``field[i]``); callers that embed a
                part of a request pass the positions in the whole request.
            tenant: Whose share of the backbone this work counts against (default: the calling
                tenant; training jobs pass `request_context.TRAINING_TENANT`).

        Raises:
            InvalidArgument: unknown backbone, or a bad input (named by index).
            ResourceExhausted: the tenant is over its share of the backbone.
            Unavailable: the runtime is down, or the request's deadline passed while it waited.
        """
        served = self.get(backbone)
        check_count(inputs, self._limits, field)
        wheres = wheres or [f"{field}[{index}]" for index in range(len(inputs))]
        for item, where in zip(inputs, wheres, strict=True):
            self.check_input(served, item, where)
        tenant = tenant or calling_tenant()
        # A training job outlives the RPC that started it: the RPC's deadline is not its own.
        deadline = (
            None
            if tenant == request_context.TRAINING_TENANT
            else request_context.current_deadline()
        )
        if served.image is not None:
            # Each image's cost is its declared pixels, read once from its header.
            images = [item.data for item in inputs]  # type: ignore[union-attr] - checked above
            tasks = [
                (data, where, served.image.declared_pixels(data))
                for data, where in zip(images, wheres, strict=True)
            ]
            cost = sum(pixels for _data, _where, pixels in tasks)
        else:
            length = served.card.max_sequence_length or 1
            texts = [item.text for item in inputs]  # type: ignore[union-attr] - checked above
            cost = sum(text_tokens_bound(text, length) for text in texts)
        with served.admission.admit(tenant, cost):
            if served.image is not None:
                assert served.decoder is not None, "an image backbone has a decoder"
                items: list[Any] = await served.decoder.decode(tenant, tasks, deadline)
                truncated = [0] * len(items)
            else:
                assert served.text is not None, "a backbone is either text or image"
                loop = asyncio.get_running_loop()
                tokenized = await loop.run_in_executor(
                    self._preprocess, served.text.tokenize, texts
                )
                truncated = [item.length if item.truncated else 0 for item in tokenized]
                items = tokenized
            vectors = await served.runtime.embed(items, tenant, deadline)
        metrics.EMBEDDED_INPUTS.labels(backbone=served.card.name).inc(len(items))
        return EmbedResult(served.card, vectors, truncated)
