"""The model repository: one folder per backbone, each with a card and a version folder."""

from __future__ import annotations

import logging
from pathlib import Path

from service.backbones.card import CARD_FILE, BackboneCard, model_path, sha256_of_file

log = logging.getLogger(__name__)


class ModelRepositoryError(RuntimeError):
    """The repository is missing, empty or inconsistent: the server must not start on it."""


def load_cards(
    repo: Path, verify_fingerprints: bool = True
) -> dict[str, tuple[BackboneCard, Path]]:
    """Reads every exported backbone of `repo`.

    Args:
        repo: The model repository folder.
        verify_fingerprints: Hash each model.onnx and compare with its card, so that a model
            swapped under a card (and the heads bound to it) is caught at start-up.

    Returns:
        Backbone name to (card, folder).
    """
    if not repo.is_dir():
        raise ModelRepositoryError(
            f"model repository {repo} does not exist; run `transferd export`"
        )
    cards: dict[str, tuple[BackboneCard, Path]] = {}
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        if not (folder / CARD_FILE).exists():
            log.info("skipping %s: no %s (not exported)", folder, CARD_FILE)
            continue
        card = BackboneCard.load(folder)
        onnx_file = model_path(folder)
        if not onnx_file.exists():
            raise ModelRepositoryError(f"{onnx_file} is missing; run `transferd export`")
        if verify_fingerprints and sha256_of_file(onnx_file) != card.fingerprint:
            raise ModelRepositoryError(
                f"{onnx_file} does not match the fingerprint in its card; re-run `transferd export`"
            )
        cards[card.name] = (card, folder)
    if not cards:
        raise ModelRepositoryError(f"no exported backbone in {repo}; run `transferd export`")
    return cards
