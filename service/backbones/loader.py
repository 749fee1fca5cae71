"""Builds the served backbones from the model repository and the settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.backbones.admission import AdmissionGate
from service.backbones.batcher import CallPolicy
from service.backbones.card import BackboneCard
from service.backbones.embedded import BackboneLoadError, EmbeddedRuntime
from service.backbones.embedder import ServedBackbone
from service.backbones.image import ImagePreprocessor, collate_images, plan_image_batches
from service.backbones.image_decoding import ImageDecoder
from service.backbones.repository import load_cards
from service.backbones.runtime import BackboneRuntime
from service.backbones.text import TextPreprocessor, collate_text, text_call_policy
from service.config import RuntimeKind, Settings


@dataclass(frozen=True)
class _Modality:
    """How one backbone's inputs are prepared and batched, whatever runtime runs it."""

    text: TextPreprocessor | None
    image: ImagePreprocessor | None
    collate: Callable[[list[Any]], dict[str, np.ndarray]]
    calls: CallPolicy  # embedded runtime: requests → inference calls, tenants in turn
    admission: AdmissionGate


def _modality(settings: Settings, card: BackboneCard, folder: Path) -> _Modality:
    size, tokens = settings.max_batch_size, settings.max_batch_tokens
    if card.modality == "text":
        assert card.tokenizer_file and card.max_sequence_length
        text = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length)
        capacity = settings.max_queued_inputs * card.max_sequence_length
        gate = AdmissionGate(card.name, capacity, "tokens")
        return _Modality(text, None, collate_text, text_call_policy(size, tokens), gate)
    if card.modality == "image":
        assert card.image_size and card.resize_policy
        image = ImagePreprocessor(
            card.image_size,
            card.resize_policy,
            settings.max_image_bytes,
            settings.max_image_pixels,
            settings.max_jpeg_scans,
        )
        calls = CallPolicy(
            lambda items: plan_image_batches(len(items), size),
            len,
            lambda call, group: len(call) + len(group) <= size,
            float(size),
        )
        gate = AdmissionGate(card.name, settings.max_queued_pixels, "pixels")
        return _Modality(None, image, collate_images, calls, gate)
    raise NotImplementedError(f"{card.name}: modality '{card.modality}' is not supported")


def image_decode_threads(settings: Settings) -> int:
    """The image decoding pool's size: the setting, or half the cores (at least 1)."""
    return settings.image_decode_threads or max(1, (os.cpu_count() or 1) // 2)


def build_backbones(settings: Settings) -> dict[str, ServedBackbone]:
    """One ServedBackbone per exported folder, on the runtime the settings choose.

    Image backbones share one decoding pool, apart from the text tokenizers' pool.
    """
    served: dict[str, ServedBackbone] = {}
    pool: ThreadPoolExecutor | None = None
    threads = image_decode_threads(settings)
    for name, (card, folder) in load_cards(settings.model_repo).items():
        modality = _modality(settings, card, folder)
        runtime = _runtime(settings, card, folder, modality)
        decoder = None
        if modality.image is not None:
            pool = pool or ThreadPoolExecutor(threads, thread_name_prefix="image-decode")
            decoder = ImageDecoder(name, modality.image, pool, threads)
        served[name] = ServedBackbone(
            card,
            runtime,
            modality.admission,
            text=modality.text,
            image=modality.image,
            decoder=decoder,
        )
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
        calls=modality.calls,
        threads=settings.effective_threads(settings.inference_threads),
        max_wait_s=settings.batch_wait_ms / 1000,
        fill_items=settings.max_batch_size,
        lanes=settings.inference_lanes,
    )


def _triton_runtime(settings: Settings, card: BackboneCard) -> BackboneRuntime:
    """A backbone on Triton. Text: int64 ids and mask of any length, padded to length buckets;
    images: uint8 pixels of the model's size, in calls of at most the model's max_batch_size."""
    try:
        # tritonclient is the `triton` extra: an embedded-only install does not need it.
        from service.backbones.triton import ModelContract, TritonOptions, TritonRuntime
        from service.backbones.triton_batches import (
            bucket_length,
            collate_text_bucketed,
            text_call_planner,
        )
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
        max_calls_in_flight=settings.triton_max_calls_in_flight,
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
            quantum=float(settings.max_batch_size),
        )
        return runtime
    assert card.max_sequence_length
    max_length = card.max_sequence_length

    def bucketed_tokens(items: list[Any]) -> float:
        """A Triton text call's cost: padded to the bucket of its longest text."""
        return float(len(items) * bucket_length(max(i.length for i in items), max_length))

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
        cost=bucketed_tokens,
        quantum=float(settings.max_batch_size * max_length),
    )
    return runtime
