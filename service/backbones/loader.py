"""Builds the served backbones from the model repository and the settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.backbones.card import BackboneCard
from service.backbones.embedded import EmbeddedRuntime
from service.backbones.embedder import ServedBackbone
from service.backbones.repository import load_cards
from service.backbones.text import TextPreprocessor, collate_text, plan_batches
from service.config import RuntimeKind, Settings


def _text_lengths_planner(settings: Settings) -> Callable[[list[Any]], list[list[int]]]:
    def plan(items: list[Any]) -> list[list[int]]:
        return plan_batches(
            [item.length for item in items], settings.max_batch_size, settings.max_batch_tokens
        )

    return plan


def build_backbones(settings: Settings) -> dict[str, ServedBackbone]:
    """One ServedBackbone per exported folder, on the runtime the settings choose."""
    served: dict[str, ServedBackbone] = {}
    for name, (card, folder) in load_cards(settings.model_repo).items():
        if card.modality != "text":
            raise NotImplementedError(f"{name}: modality '{card.modality}' is not supported yet")
        assert card.tokenizer_file and card.max_sequence_length
        text = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length)
        served[name] = ServedBackbone(card, _runtime(settings, card, folder), text)
    return served


def _runtime(settings: Settings, card: BackboneCard, folder: Path) -> EmbeddedRuntime:
    if settings.runtime is not RuntimeKind.EMBEDDED:
        raise NotImplementedError(f"runtime '{settings.runtime.value}' is not available yet")
    return EmbeddedRuntime(
        card,
        folder,
        collate=collate_text,
        plan_batches=_text_lengths_planner(settings),
        threads=settings.effective_threads(settings.inference_threads),
        # A round may hold several requests; plan_batches cuts it into inference calls.
        max_round_items=max(settings.max_batch_size * 4, settings.max_inputs_per_request),
        max_wait_s=settings.batch_wait_ms / 1000,
        max_queued_items=settings.max_queued_inputs,
    )
