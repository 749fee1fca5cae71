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
from service import metrics, request_context
from service.backbones.admission import AdmissionGate, calling_tenant
from service.backbones.card import BackboneCard
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
    ) -> None:
        self._backbones = backbones
        self._limits = limits

    @property
    def limits(self) -> InputLimits:
        return self._limits

    def served(self) -> list[ServedBackbone]:
        return [self._backbones[name] for name in sorted(self._backbones)]

    def candidates_for(self, inputs: list[Input], field: str = "examples") -> list[ServedBackbone]:
        """Backbone "auto": every served backbone of the inputs' modality, narrowest embedding
        first (the cheaper one is preferred on a tie).

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
        found = [b for b in self._backbones.values() if b.card.modality == modalities[0]]
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
        costs = served.modality.costs(inputs)
        with served.admission.admit(tenant, sum(costs)):
            prepared = await served.modality.prepare(inputs, wheres, costs, tenant, deadline)
            vectors = await served.runtime.embed(prepared.items, tenant, deadline)
        metrics.EMBEDDED_INPUTS.labels(backbone=served.card.name).inc(len(inputs))
        return EmbedResult(served.card, vectors, prepared.truncated_to)

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
