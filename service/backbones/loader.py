"""Builds the served backbones from the model repository and the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.backbones.card import BackboneCard
from service.backbones.embedded import BackboneLoadError, EmbeddedRuntime
from service.backbones.embedder import ServedBackbone
from service.backbones.image import ImagePreprocessor, collate_images, plan_image_batches
from service.backbones.repository import load_cards
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor, collate_text, plan_batches
from service.config import RuntimeKind, Settings

Plan = Callable[[list[Any]], list[list[int]]]


@dataclass(frozen=True)
class _Modality:
    """How one backbone's inputs are prepared and batched, whatever runtime runs it."""

    text: TextPreprocessor | None
    image: ImagePreprocessor | None
    collate: Callable[[list[Any]], dict[str, np.ndarray]]
    plan: Plan  # embedded runtime: items of one round → inference calls


def _modality(settings: Settings, card: BackboneCard, folder: Path) -> _Modality:
    if card.modality == "text":
        assert card.tokenizer_file and card.max_sequence_length
        text = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length)

        def plan_texts(items: list[Any]) -> list[list[int]]:
            lengths = [item.length for item in items]
            return plan_batches(lengths, settings.max_batch_size, settings.max_batch_tokens)

        return _Modality(text, None, collate_text, plan_texts)
    if card.modality == "image":
        assert card.image_size and card.resize_policy
        image = ImagePreprocessor(
            card.image_size, card.resize_policy, settings.max_image_bytes, settings.max_image_pixels
        )

        def plan_images(items: list[Any]) -> list[list[int]]:
            return plan_image_batches(len(items), settings.max_batch_size)

        return _Modality(None, image, collate_images, plan_images)
    raise NotImplementedError(f"{card.name}: modality '{card.modality}' is not supported")


def build_backbones(settings: Settings) -> dict[str, ServedBackbone]:
    """One ServedBackbone per exported folder, on the runtime the settings choose."""
    served: dict[str, ServedBackbone] = {}
    for name, (card, folder) in load_cards(settings.model_repo).items():
        modality = _modality(settings, card, folder)
        runtime = _runtime(settings, card, folder, modality)
        served[name] = ServedBackbone(card, runtime, text=modality.text, image=modality.image)
    return served


def _runtime(
    settings: Settings, card: BackboneCard, folder: Path, modality: _Modality
) -> BackboneRuntime:
    if settings.runtime is RuntimeKind.TRITON:
        return _triton_runtime(settings, card)
    return EmbeddedRuntime(
        card,
        folder,
        collate=modality.collate,
        plan_batches=modality.plan,
        threads=settings.effective_threads(settings.inference_threads),
        # A round may hold several requests; plan_batches cuts it into inference calls.
        max_round_items=max(settings.max_batch_size * 4, settings.max_inputs_per_request),
        max_wait_s=settings.batch_wait_ms / 1000,
        max_queued_items=settings.max_queued_inputs,
    )


def _triton_runtime(settings: Settings, card: BackboneCard) -> BackboneRuntime:
    """A backbone on Triton. Text: int64 ids and mask of any length, padded to length buckets;
    images: uint8 pixels of the model's size, in calls of at most the model's max_batch_size."""
    try:
        # tritonclient is the `triton` extra: an embedded-only install does not need it.
        from service.backbones.triton import ModelContract, TritonOptions, TritonRuntime
        from service.backbones.triton_batches import collate_text_bucketed, text_call_planner
    except ImportError as error:
        raise BackboneLoadError(
            f"runtime=triton needs the triton extra (pip install 'transferd[triton]'): {error}"
        ) from error
    options = TritonOptions(
        url=settings.triton_url,
        timeout_s=settings.triton_timeout_s,
        retries=settings.triton_retries,
        retry_backoff_s=settings.triton_retry_backoff_s,
        probe_interval_s=settings.triton_probe_interval_s,
        startup_timeout_s=settings.triton_startup_timeout_s,
        max_in_flight_items=settings.max_queued_inputs,
    )
    runtime: TritonRuntime
    if card.modality == "image":
        assert card.image_size
        size = card.image_size
        runtime = TritonRuntime(
            card,
            ModelContract(
                input_dtypes={"pixels": np.dtype(np.uint8)}, input_dims={"pixels": [size, size, 3]}
            ),
            collate=collate_images,
            plan_calls=lambda items: plan_image_batches(len(items), runtime.max_batch_size),
            options=options,
        )
        return runtime
    assert card.max_sequence_length
    contract = ModelContract(
        input_dtypes={name: np.dtype(np.int64) for name in card.input_names},
        input_dims={name: [-1] for name in card.input_names},
    )
    runtime = TritonRuntime(
        card,
        contract,
        collate=collate_text_bucketed(card.max_sequence_length),
        # Reads the model's max_batch_size when called: Triton reports it at start-up.
        plan_calls=text_call_planner(card.max_sequence_length, lambda: runtime.max_batch_size),
        options=options,
    )
    return runtime
