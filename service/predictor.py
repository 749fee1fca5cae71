"""Predict: one batched embed of the inputs (by each part of a fused head, concurrently), then one
call of the tenant's head."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from heads import HeadCard, Prediction
from service import tracing
from service.backbones.embedder import Embedder
from service.backbones.fused import head_backbones
from service.backbones.inputs import EmbeddingInput, Input, check_count
from service.errors import InvalidArgument
from service.reply_size import check_predict_reply
from service.store.registry import HeadRegistry, StoredHead, check_head_name


@dataclass(frozen=True)
class PredictResult:
    head: str
    version: int
    predictions: list[Prediction]


class Predictor:
    def __init__(
        self,
        embedder: Embedder,
        registry: HeadRegistry,
        executor: Executor,
        max_reply_bytes: int,
    ) -> None:
        self._embedder = embedder
        self._registry = registry
        self._executor = executor
        self._max_reply_bytes = max_reply_bytes

    @property
    def max_reply_bytes(self) -> int:
        """The largest reply; callers of `predict_with` bound their reply by it first."""
        return self._max_reply_bytes

    async def predict(
        self, tenant: str, head: str, version: int, inputs: list[Input], top_k: int
    ) -> PredictResult:
        """Predicts with the tenant's head on texts and/or precomputed embeddings.

        Raises:
            NotFound: no such head (or version) for this tenant.
            ResourceExhausted: the reply could exceed the response size limit.
            FailedPrecondition: the head's backbone is not served, or was re-exported since.
            InvalidArgument: a bad input, named by index.
        """
        check_head_name(head)
        check_count(inputs, self._embedder.limits)
        stored = await self._registry.get(tenant, head, version)
        # Before any work, loading the head included: a reply too large to send is refused from
        # the stored card, not built.
        check_predict_reply(stored, len(inputs), top_k, self._max_reply_bytes)
        return await self.predict_with(stored, version, inputs, tenant, top_k)

    async def predict_with(
        self,
        stored: StoredHead,
        version: int,
        inputs: list[Input],
        tenant: str,
        top_k: int = 0,
        field: str = "inputs",
    ) -> PredictResult:
        """Predicts with a head version the caller found (`HeadRegistry.get`) and whose reply
        it has bounded: the one path of Predict and of the Open Inference Protocol's ModelInfer.

        Args:
            stored: The head version's card.
            version: The version the caller asked for (0: the latest), as a NotFound names it.
            inputs: Texts or images of the head's backbone modality, or embeddings.
            tenant: The head's tenant, whose share of the backbone and cache the inputs take.
            top_k: Scores per prediction (0: every label's).
            field: How errors name the inputs: ``field[i]``.

        Raises:
            As `predict`, but for the reply's size.
        """
        check_count(inputs, self._embedder.limits, field)
        loaded = await self._registry.load_stored(stored, version)
        card = loaded.card
        backbones = head_backbones(self._embedder, card)
        rows = np.empty((len(inputs), card.embedding_dim), dtype=np.float32)
        to_embed: list[int] = []  # positions of texts or images; embeddings go straight in
        for index, item in enumerate(inputs):
            if isinstance(item, EmbeddingInput):
                # A fused head's: the weighted join of its parts' embeddings, as it was trained.
                rows[index] = _checked_embedding(item, card.embedding_dim, f"{field}[{index}]")
            else:
                backbones.check_input(self._embedder, item, f"{field}[{index}]")
                to_embed.append(index)
        if to_embed:
            rows[to_embed] = await backbones.embed(
                self._embedder,
                [inputs[i] for i in to_embed],
                wheres=[f"{field}[{i}]" for i in to_embed],
                tenant=tenant,
            )
        with tracing.span("head.predict", _head_attributes(card, len(inputs))):
            predictions = await asyncio.get_running_loop().run_in_executor(
                self._executor, loaded.predict, rows, top_k
            )
        return PredictResult(card.name, card.version, predictions)


def _head_attributes(card: HeadCard, inputs: int) -> tracing.Attributes:
    """What the head.predict span says of the head: its name, version, kind and backbone, and
    the number of inputs (never them, nor the labels)."""
    if not tracing.enabled():
        return {}
    return {
        "transferd.head": card.name,
        "transferd.head_version": card.version,
        "transferd.head_kind": card.kind,
        "transferd.backbone": card.backbone,
        "transferd.inputs": inputs,
    }


def _checked_embedding(item: EmbeddingInput, dim: int, where: str) -> np.ndarray:
    values = item.values
    if values.shape != (dim,):
        raise InvalidArgument(
            f"{where}.embedding", f"has {values.size} values; the head takes {dim}"
        )
    if not np.all(np.isfinite(values)):
        raise InvalidArgument(f"{where}.embedding", "has NaN or infinite values")
    return values
