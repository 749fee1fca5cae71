"""Writes a verified export into the model repository so that no half-written state is ever used."""

from __future__ import annotations

from pathlib import Path

from service.backbones.card import CARD_FILE, BackboneCard, model_path
from service.store.files import write_atomically


def publish_backbone(
    folder: Path, card: BackboneCard, model_bytes: bytes, extra_files: dict[str, bytes]
) -> None:
    """Publishes a backbone folder; the card goes last.

    The card carries the model's fingerprint, so a crash before it is written leaves either the
    old card (whose fingerprint no longer matches, which the repository refuses loudly) or no card
    (the folder is skipped): never a silently mismatched backbone.
    """
    write_atomically(model_path(folder), model_bytes)
    for name, data in extra_files.items():
        write_atomically(folder / name, data)
    write_atomically(folder / CARD_FILE, card.to_json().encode())
