"""The interface every backbone runtime implements (embedded ONNX Runtime, Triton)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from service.backbones.card import BackboneCard


class BackboneRuntime(Protocol):
    """Runs one backbone: preprocessed items in, one embedding row per item out."""

    kind: str  # "embedded" or "triton", as ListBackbones reports it
    card: BackboneCard

    async def start(self) -> None:
        """Loads the model (or checks the remote one); raises when it cannot serve."""

    def is_ready(self) -> bool:
        """Whether embed() can be expected to work now (feeds gRPC health)."""

    async def embed(
        self, items: list[Any], tenant: str, deadline: float | None = None
    ) -> np.ndarray:
        """Embeds preprocessed items in `tenant`'s turn of the backbone's fair batcher.

        `deadline` (loop clock) drops the work not yet started once it passes. Raises
        Unavailable when the backend is down or the deadline passed.
        """

    async def close(self) -> None:
        """Releases the model and stops background work."""
