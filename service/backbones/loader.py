"""Builds the served backbones from the model repository and the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.backbones.card import BackboneCard
from service.backbones.embedded import BackboneLoadError, EmbeddedRuntime
from service.backbones.embedder import ServedBackbone
from service.backbones.repository import load_cards
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor, collate_text, plan_batches
from service.config import RuntimeKind, Settings

log = logging.getLogger(__name__)


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
        if card.modality == "image":
            # TODO(images): wired in the next step (ImagePreprocessor, collate_images).
            log.warning("%s: image backbones are not served yet; skipping it", name)
            continue
        if card.modality != "text":
            raise NotImplementedError(f"{name}: modality '{card.modality}' is not supported yet")
        assert card.tokenizer_file and card.max_sequence_length
        text = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length)
        served[name] = ServedBackbone(card, _runtime(settings, card, folder), text)
    return served


def _runtime(settings: Settings, card: BackboneCard, folder: Path) -> BackboneRuntime:
    if settings.runtime is RuntimeKind.TRITON:
        return _triton_runtime(settings, card)
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


def _triton_runtime(settings: Settings, card: BackboneCard) -> BackboneRuntime:
    """A text backbone on Triton: int64 ids and mask of any length, padded to length buckets."""
    try:
        # tritonclient is the `triton` extra: an embedded-only install does not need it.
        from service.backbones.triton import ModelContract, TritonOptions, TritonRuntime
        from service.backbones.triton_batches import collate_text_bucketed, text_call_planner
    except ImportError as error:
        raise BackboneLoadError(
            f"runtime=triton needs the triton extra (pip install 'transferd[triton]'): {error}"
        ) from error
    assert card.max_sequence_length
    options = TritonOptions(
        url=settings.triton_url,
        timeout_s=settings.triton_timeout_s,
        retries=settings.triton_retries,
        retry_backoff_s=settings.triton_retry_backoff_s,
        probe_interval_s=settings.triton_probe_interval_s,
        startup_timeout_s=settings.triton_startup_timeout_s,
        max_in_flight_items=settings.max_queued_inputs,
    )
    contract = ModelContract(
        input_dtypes={name: np.dtype(np.int64) for name in card.input_names},
        input_dims={name: [-1] for name in card.input_names},
    )
    runtime: TritonRuntime
    runtime = TritonRuntime(
        card,
        contract,
        collate=collate_text_bucketed(card.max_sequence_length),
        # Reads the model's max_batch_size when called: Triton reports it at start-up.
        plan_calls=text_call_planner(card.max_sequence_length, lambda: runtime.max_batch_size),
        options=options,
    )
    return runtime
