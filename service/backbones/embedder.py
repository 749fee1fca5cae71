"""The Embedder: validated inputs in, embeddings out, for every served backbone.

Protocol-free: the servicers, the training jobs and Predict call it with domain inputs.

The order of work bounds what a request costs before it is paid: the modality's cheap checks, then
admission (the tenant's share of the backbone, in the tokens or pixels the modality estimates from
the raw inputs), then the modality's preparation (tokenizer pool, or image pool with tenants in
turn), then the runtime's fair batcher. The Embedder never asks which modality or runtime it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from heads import RawInputs
from service import metrics, request_context, tracing
from service.backbones.admission import AdmissionGate, calling_tenant
from service.backbones.card import INT8, BackboneCard
from service.backbones.cost import relative_costs
from service.backbones.embedding_cache import (
    CachedEmbedding,
    CacheKey,
    ComputationAbandoned,
    EmbeddingCache,
)
from service.backbones.inputs import ImageInput, Input, InputLimits, TextInput, check_count
from service.backbones.modalities.base import Modality
from service.backbones.runtimes.base import BackboneRuntime
from service.errors import InvalidArgument, shown


@dataclass
class ServedBackbone:
    """A backbone ready to serve: its card, its modality, its tenants' shares and its runtime."""

    card: BackboneCard
    modality: Modality  # checks, costs and prepares inputs; plans the runtime's calls
    admission: AdmissionGate  # the tenants' shares of this backbone, in the modality's unit
    runtime: BackboneRuntime
    compute_weights: int = 0  # what it multiplies by per input (`cost`); 0: not counted


@dataclass(frozen=True)
class EmbedResult:
    card: BackboneCard
    vectors: np.ndarray  # float32 (n, dim), one row per input in request order
    truncated_to: list[int]  # per input: tokens kept when a text was cut, else 0


#: The modality a backbone must have to embed each kind of input (embeddings have none).
MODALITY_OF_INPUT: dict[type, str] = {TextInput: "text", ImageInput: "image"}


class Embedder:
    """Validates, preprocesses off the event loop, and embeds through the backbone's runtime."""

    def __init__(
        self,
        backbones: dict[str, ServedBackbone],
        limits: InputLimits,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self._backbones = backbones
        self._limits = limits
        self._cache = cache if cache is not None else EmbeddingCache(0)
        self._relative_costs = relative_costs(
            (name, served.card.modality, served.compute_weights)
            for name, served in backbones.items()
        )

    @property
    def limits(self) -> InputLimits:
        return self._limits

    def served(self) -> list[ServedBackbone]:
        return [self._backbones[name] for name in sorted(self._backbones)]

    def relative_cost(self, names: list[str]) -> float:
        """What embedding an input with these backbones costs (a fused head: its parts), in
        units of the cheapest served backbone of their modality (`service.backbones.cost`)."""
        return round(sum(self._relative_costs.get(name, 0.0) for name in names), 2)

    def candidates_for(self, inputs: list[Input], field: str = "examples") -> list[ServedBackbone]:
        """Backbone "auto": every served backbone of the inputs' modality but the int8 variants,
        narrowest embedding first (the cheaper one is preferred on a tie).

        Raises:
            InvalidArgument: the inputs mix modalities, or are precomputed embeddings (which
                belong to one backbone already), naming the first input that differs.
        """
        modalities = [MODALITY_OF_INPUT.get(type(item)) for item in inputs]
        for index, modality in enumerate(modalities):
            if modality is None:
                raise InvalidArgument(
                    f"{field}[{index}].input",
                    'backbone "auto" embeds texts or images; an embedding belongs to one backbone',
                )
            if modality != modalities[0]:
                raise InvalidArgument(
                    f"{field}[{index}].input",
                    f'backbone "auto" needs inputs of one kind: {modalities[0]} before, '
                    f"{modality} here",
                )
        # A quantized variant is its source model at lower precision: a speed choice the
        # customer makes by name, never worth a second embedding of every example here.
        found = [
            b
            for b in self._backbones.values()
            if b.card.modality == modalities[0] and b.card.precision != INT8
        ]
        if not found:
            raise InvalidArgument("backbone", f"no {modalities[0]} backbone is served here")
        return sorted(found, key=lambda b: (b.card.dim, b.card.name))

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
            served.modality.start()
        await asyncio.gather(*(b.runtime.start() for b in self._backbones.values()))

    def is_ready(self) -> bool:
        return all(b.runtime.is_ready() for b in self._backbones.values())

    async def close(self) -> None:
        await asyncio.gather(
            *(b.runtime.close() for b in self._backbones.values()),
            *(b.modality.close() for b in self._backbones.values()),
        )

    def check_input(self, served: ServedBackbone, item: Input, where: str) -> None:
        """Cheap checks of one input against the backbone's modality and the limits (no decoding).

        Raises:
            InvalidArgument: naming `where`, e.g. ``examples[3].input.text``.
        """
        served.modality.check(item, where)

    async def embed(
        self,
        backbone: str,
        inputs: list[Input],
        field: str = "inputs",
        wheres: list[str] | None = None,
        *,
        tenant: str | None = None,
        training: bool = False,
    ) -> EmbedResult:
        """Embeds `inputs` with `backbone`, through the tenant's part of the embedding cache.

        Args:
            backbone: A served backbone's name.
            inputs: Texts for a text backbone, images for an image backbone.
            field: The request field holding the inputs (for the count error).
            wheres: How errors name each input (default ``field[i]``); callers that embed a
                part of a request pass the positions in the whole request.
            tenant: Whose inputs these are (default: the calling tenant): the cache is theirs.
            training: The work of a training job: it counts against the backbone's "training"
                share (`request_context.TRAINING_TENANT`) and has no deadline (a job outlives
                the RPC that started it).

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
        work = _Work(
            served,
            share=request_context.TRAINING_TENANT if training else tenant,
            deadline=None if training else request_context.current_deadline(),
        )
        keys = await self._cache_keys(tenant, served.card.fingerprint, inputs)
        return await _EmbeddingThroughCache(self._cache, work, inputs, wheres, keys).run()

    async def _cache_keys(
        self, tenant: str, fingerprint: str, inputs: list[Input]
    ) -> list[CacheKey | None]:
        """The cache key of each input; hashed off the event loop when the inputs are large
        (images), so that other requests are not held up meanwhile."""

        def keys() -> list[CacheKey | None]:
            return [self._cache.key(tenant, fingerprint, item) for item in inputs]

        if not self._cache.enabled:
            return [None] * len(inputs)
        if sum(_size_of(item) for item in inputs) > _HASH_OFF_LOOP_ABOVE_BYTES:
            return await asyncio.to_thread(keys)
        return keys()

    async def baseline_inputs(
        self, backbone: str, inputs: list[Input], wheres: list[str], tenant: str
    ) -> RawInputs:
        """`inputs`, already embedded by `embed`, as a from-scratch baseline sees them (texts,
        or downscaled pixels), under the same admission as embedding them.

        Raises:
            InvalidArgument: an unknown backbone, or an image that does not decode.
            ResourceExhausted: the tenant is over its share of the backbone.
        """
        served = self.get(backbone)
        costs = served.modality.costs(inputs)
        with served.admission.admit(tenant, sum(costs)):
            return await served.modality.baseline_inputs(inputs, wheres, costs, tenant)


#: Inputs larger than this in all are hashed in a worker thread (hashlib releases the GIL).
_HASH_OFF_LOOP_ABOVE_BYTES = 1 << 20


def _size_of(item: Input) -> int:
    if isinstance(item, TextInput):
        return len(item.text)
    if isinstance(item, ImageInput):
        return len(item.data)
    return 0


@dataclass(frozen=True)
class _Work:
    """How inputs missing from the cache are computed: on which backbone, in whose share of it,
    before which deadline."""

    served: ServedBackbone
    share: str  # the tenant whose admission share and batcher turn the work takes
    deadline: float | None  # loop clock; None: no deadline

    async def compute(self, inputs: list[Input], wheres: list[str]) -> tuple[np.ndarray, list[int]]:
        """Embeds `inputs` on the backbone: admission, preparation, the runtime's batcher."""
        served = self.served
        costs = served.modality.costs(inputs)
        with served.admission.admit(self.share, sum(costs)):
            with tracing.span("preprocess", {"transferd.backbone": served.card.name}):
                prepared = await served.modality.prepare(
                    inputs, wheres, costs, self.share, self.deadline
                )
            vectors = await served.runtime.embed(prepared.items, self.share, self.deadline)
        metrics.EMBEDDED_INPUTS.labels(backbone=served.card.name).inc(len(inputs))
        return vectors, prepared.truncated_to


class _EmbeddingThroughCache:
    """One request's inputs: those in the cache are copied from it, those another request is
    computing are awaited, the rest (each distinct input once) are computed and kept."""

    def __init__(
        self,
        cache: EmbeddingCache,
        work: _Work,
        inputs: list[Input],
        wheres: list[str],
        keys: list[CacheKey | None],
    ) -> None:
        self._cache = cache
        self._work = work
        self._inputs = inputs
        self._wheres = wheres
        self._keys = keys
        card = work.served.card
        self._rows = np.empty((len(inputs), card.dim), dtype=np.float32)
        self._truncated_to = [0] * len(inputs)

    async def run(self) -> EmbedResult:
        backbone = self._work.served.card.name
        first_of: dict[CacheKey, int] = {}  # each distinct key's first position
        repeats: list[tuple[int, int]] = []  # (position, the earlier position of its input)
        mine: list[int] = []  # positions this request computes
        awaited: list[tuple[int, asyncio.Future[CachedEmbedding]]] = []
        hits = 0
        for position, key in enumerate(self._keys):
            if key is None:
                mine.append(position)
                continue
            if key in first_of:
                repeats.append((position, first_of[key]))
                continue
            first_of[key] = position
            entry = self._cache.get(key)
            if entry is not None:
                hits += 1
                self._fill(position, entry.row(), entry.truncated_to)
            elif (pending := self._cache.being_computed(key)) is not None:
                awaited.append((position, pending))
            else:
                self._cache.start_computing(key)
                mine.append(position)
        if first_of:  # each distinct input looked up once: a hit, or a miss
            self._cache.count_lookups(backbone, hits, len(first_of) - hits)
        await self._compute(mine, marked=True)
        await self._await_others(awaited)
        for position, earlier in repeats:
            self._fill(position, self._rows[earlier], self._truncated_to[earlier])
        return EmbedResult(self._work.served.card, self._rows, self._truncated_to)

    async def _compute(self, positions: list[int], marked: bool) -> None:
        """Computes the inputs at `positions` and keeps them; `marked`: their keys were marked
        as being computed, and must be unmarked whatever happens (waiters then retry)."""
        if not positions:
            return
        try:
            vectors, truncated_to = await self._work.compute(
                [self._inputs[p] for p in positions], [self._wheres[p] for p in positions]
            )
        except BaseException:
            if marked:
                for position in positions:
                    if (key := self._keys[position]) is not None:
                        self._cache.finish_computing(key, None)
            raise
        for index, position in enumerate(positions):
            self._fill(position, vectors[index], truncated_to[index])
            if (key := self._keys[position]) is not None:
                entry = CachedEmbedding(vectors[index].tobytes(), truncated_to[index])
                if marked:
                    self._cache.finish_computing(key, entry)
                else:
                    self._cache.put(key, entry)

    async def _await_others(
        self, awaited: list[tuple[int, asyncio.Future[CachedEmbedding]]]
    ) -> None:
        """Takes the results other requests computed; those they gave up on (cancelled, past
        their deadline, failed) are computed here, in one call."""
        abandoned: list[int] = []
        for position, pending in awaited:
            try:
                # shield: this request's cancellation must not cancel the other's result.
                entry = await asyncio.shield(pending)
            except ComputationAbandoned:
                abandoned.append(position)
                continue
            self._fill(position, entry.row(), entry.truncated_to)
        await self._compute(abandoned, marked=False)

    def _fill(self, position: int, row: np.ndarray, truncated_to: int) -> None:
        self._rows[position] = row
        self._truncated_to[position] = truncated_to
