"""Writes a verified export into the model repository so that no half-written state is ever used."""

from __future__ import annotations

from pathlib import Path

import onnx

from service.backbones.card import CARD_FILE, BackboneCard, model_path
from service.backbones.cost import COMPUTE_WEIGHTS, compute_weights
from service.store.files import write_atomically


def publish_backbone(
    folder: Path, card: BackboneCard, model_bytes: bytes, extra_files: dict[str, bytes]
) -> None:
    """Publishes a backbone folder; the card goes last.

    The card carries the model's fingerprint, so a crash before it is written leaves either the
    old card (whose fingerprint no longer matches, which the repository refuses loudly) or no card
    (the folder is skipped): never a silently mismatched backbone.
    """
    # What it costs per input, beside the others (ListBackbones, GetHead): counted once, here.
    weights = compute_weights(onnx.load_from_string(model_bytes))
    card = card.model_copy(update={"export": {**card.export, COMPUTE_WEIGHTS: weights}})
    write_atomically(model_path(folder), model_bytes)
    for name, data in extra_files.items():
        write_atomically(folder / name, data)
    write_atomically(folder / CARD_FILE, card.to_json().encode())
