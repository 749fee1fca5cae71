"""Builds the served backbones from the model repository and the settings.

Each backbone is its card, one modality object (text or image, by the card), one admission gate
counted in the modality's unit, and one runtime (embedded or Triton, by the settings) that asks
the modality to plan its calls. This is the only place that chooses either.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from service.backbones.admission import AdmissionGate
from service.backbones.card import BackboneCard
from service.backbones.cost import card_compute_weights
from service.backbones.embedder import ServedBackbone
from service.backbones.modalities.base import Modality
from service.backbones.modalities.image import ImageModality
from service.backbones.modalities.image_decoding import ImageDecoder
from service.backbones.modalities.image_preprocessing import ImagePreprocessor, allow_pillow_pixels
from service.backbones.modalities.text import TextModality
from service.backbones.repository import load_cards
from service.backbones.runtimes.base import BackboneLoadError, BackboneRuntime
from service.backbones.runtimes.embedded import EmbeddedOptions, EmbeddedRuntime
from service.config import RuntimeKind, Settings


def image_decode_threads(settings: Settings) -> int:
    """The image decoding pool's size: the setting, or half the cores (at least 1)."""
    return settings.image_decode_threads or max(1, (os.cpu_count() or 1) // 2)


class _Pools:
    """The pools the modalities share: the server's tokenizer pool, and one image pool (created
    with the first image backbone) apart from it, so that images never slow text down."""

    def __init__(self, settings: Settings, tokenizers: Executor) -> None:
        self.tokenizers = tokenizers
        self.image_threads = image_decode_threads(settings)
        self._images: ThreadPoolExecutor | None = None

    def images(self) -> ThreadPoolExecutor:
        if self._images is None:
            self._images = ThreadPoolExecutor(self.image_threads, thread_name_prefix="image-decode")
        return self._images


def build_backbones(settings: Settings, tokenizers: Executor) -> dict[str, ServedBackbone]:
    """One ServedBackbone per exported folder, on the runtime the settings choose.

    Args:
        settings: The server's settings.
        tokenizers: The pool that tokenizes texts (the server's preprocessing pool).
    """
    pools = _Pools(settings, tokenizers)
    served: dict[str, ServedBackbone] = {}
    for name, (card, folder) in load_cards(settings.model_repo).items():
        modality, gate = _modality(settings, card, folder, pools)
        served[name] = ServedBackbone(
            card,
            modality,
            gate,
            _runtime(settings, card, folder, modality),
            card_compute_weights(card, folder),
        )
    return served


def _modality(
    settings: Settings, card: BackboneCard, folder: Path, pools: _Pools
) -> tuple[Modality, AdmissionGate]:
    """The card's modality, and its admission gate in the modality's unit."""
    if card.modality == "text":
        assert card.tokenizer_file and card.max_sequence_length, "validated by BackboneCard"
        text = TextModality(
            card.name,
            folder / card.tokenizer_file,
            card.max_sequence_length,
            settings.max_text_bytes,
            pools.tokenizers,
        )
        capacity = settings.max_queued_inputs * card.max_sequence_length
        return text, AdmissionGate(card.name, capacity, text.unit)
    if card.modality == "image":
        assert card.image_size and card.resize_policy, "validated by BackboneCard"
        allow_pillow_pixels(settings.max_image_pixels)
        preprocessor = ImagePreprocessor(
            card.image_size,
            card.resize_policy,
            settings.max_image_bytes,
            settings.max_image_pixels,
            settings.max_jpeg_scans,
        )
        decoder = ImageDecoder(card.name, preprocessor, pools.images(), pools.image_threads)
        image = ImageModality(card.name, preprocessor, decoder)
        return image, AdmissionGate(card.name, settings.max_queued_pixels, image.unit)
    raise BackboneLoadError(f"{card.name}: modality '{card.modality}' is not supported")


def _runtime(
    settings: Settings, card: BackboneCard, folder: Path, modality: Modality
) -> BackboneRuntime:
    if settings.runtime is RuntimeKind.TRITON:
        return _triton_runtime(settings, card, modality)
    options = EmbeddedOptions(
        threads=settings.effective_threads(settings.inference_threads),
        lanes=settings.inference_lanes,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_wait_s=settings.batch_wait_ms / 1000,
        device=settings.device,
    )
    return EmbeddedRuntime(card, folder, modality, options)


def _triton_runtime(settings: Settings, card: BackboneCard, modality: Modality) -> BackboneRuntime:
    try:
        # tritonclient is the `triton` extra: an embedded-only install does not need it.
        from service.backbones.runtimes.triton import TritonOptions, TritonRuntime
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
        full_call_items=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
    )
    return TritonRuntime(card, modality, options)
