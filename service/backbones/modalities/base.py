"""The seam between a backbone's modality and the runtime that runs it.

A modality (text, image) owns everything that depends on the kind of input: the cheap checks,
the admission cost, preparing the inputs (tokenizing, decoding), the tensors the model takes,
how a request's items are cut into calls and collated, and the warm-up calls. The Embedder and
the runtimes call it through this one interface and never ask which modality it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from heads import RawInputs
from service.backbones.batcher import CallPolicy
from service.backbones.inputs import Input
from service.backbones.modalities.tensors import TensorSpec
from service.backbones.runtimes.base import RuntimeNeeds

Collate = Callable[[list[Any]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Batching:
    """How a backbone's items become calls on one runtime.

    Attributes:
        calls: The fair batcher's policy: plan, cost, fits, quantum.
        collate: A call's items → the model's input tensors.
        warm_up: The calls run before the backbone reports ready, one per shape a runtime
            compiles or allocates for (built when called: Triton's batch size is known only
            after start-up).
    """

    calls: CallPolicy
    collate: Collate
    warm_up: Callable[[], list[list[Any]]]


@dataclass(frozen=True)
class Prepared:
    """A request's inputs, ready for the runtime."""

    items: list[Any]
    truncated_to: list[int]  # per input: tokens kept when a text was cut, else 0


class Modality(Protocol):
    """Everything about one backbone that depends on the kind of its inputs."""

    unit: str  # what admission counts: "tokens" or "pixels"

    def check(self, item: Input, where: str) -> None:
        """Cheap checks of one input, without decoding; raises InvalidArgument naming `where`."""

    def costs(self, inputs: list[Input]) -> list[int]:
        """Each checked input's admission cost (an upper bound, from the raw input)."""

    async def prepare(
        self,
        inputs: list[Input],
        wheres: list[str],
        costs: list[int],
        tenant: str,
        deadline: float | None,
    ) -> Prepared:
        """Tokenizes or decodes checked inputs off the event loop, tenants in turn."""

    async def baseline_inputs(
        self, inputs: list[Input], wheres: list[str], costs: list[int], tenant: str
    ) -> RawInputs:
        """Checked inputs as a from-scratch baseline sees them (heads.transfer): the texts, or
        the images decoded as `prepare` decodes them, then downscaled."""

    def tensors(self) -> dict[str, TensorSpec]:
        """The model's inputs, by name, as the gateway sends them."""

    def batching(self, needs: RuntimeNeeds) -> Batching:
        """How items become calls on a runtime with these needs."""

    def start(self) -> None:
        """Starts background work (the image decoders' turns)."""

    async def close(self) -> None:
        """Stops background work."""
