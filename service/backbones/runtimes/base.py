"""What every backbone runtime is (embedded ONNX Runtime, Triton) and what it asks of a modality.

A runtime runs calls; it does not know text from images. It advertises what its calls must look
like (`RuntimeNeeds`), the backbone's modality plans calls to match (`Modality.batching`), and
the runtime feeds them to its fair batcher. One planner per modality, whatever the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.backbones.card import BackboneCard


class BackboneLoadError(RuntimeError):
    """A backbone cannot be served: its model does not match its card, or its runtime is down."""


@dataclass(frozen=True)
class RuntimeNeeds:
    """What a runtime asks of the calls planned for it.

    Attributes:
        max_batch_size: Items one call may hold, read when a request is planned (Triton reports
            its model's at start-up and again when it comes back).
        full_call_items: Items of a full call, for the tenants' turns (known before start-up).
        max_batch_tokens: Most padded tokens of one text call (None: only max_batch_size and the
            model's length bound it).
        bucketed: Pad text calls to length buckets, so that a remote batcher (Triton's) can
            merge calls of equal shapes; else each call is padded to its own longest text.
        merges: Whether the gateway may merge small groups into one call (the embedded runtime);
            Triton merges calls itself.
    """

    max_batch_size: Callable[[], int]
    full_call_items: int
    max_batch_tokens: int | None
    bucketed: bool
    merges: bool


class BackboneRuntime(Protocol):
    """Runs one backbone: prepared items in, one embedding row per item out."""

    kind: str  # "embedded" or "triton", as ListBackbones reports it
    card: BackboneCard

    async def start(self) -> None:
        """Loads the model (or checks the remote one) and runs its warm-up calls.

        Raises:
            BackboneLoadError: it cannot serve.
        """

    def is_ready(self) -> bool:
        """Whether embed() can be expected to work now (feeds gRPC health)."""

    async def embed(
        self, items: list[Any], tenant: str, deadline: float | None = None
    ) -> np.ndarray:
        """Embeds prepared items in `tenant`'s turn of the backbone's fair batcher.

        `deadline` (loop clock) drops the work not yet started once it passes. Raises
        Unavailable when the backend is down or the deadline passed.
        """

    async def close(self) -> None:
        """Releases the model and stops background work."""
