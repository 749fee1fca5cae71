"""`transferd export`: turns pretrained weights into verified ONNX backbones in the model repository.

Needs the `export` extra (torch); serving never imports this package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.backbones.card import BackboneCard, model_path, sha256_of_file
from service.export import efficientnet, minilm, mpnet, quantize
from service.export.publish import publish_backbone
from service.export.sentences import VERIFICATION_SENTENCES
from service.export.triton_config import render_config
from service.export.verify import ExportVerificationError

__all__ = [
    "ExportOutcome",
    "ExportVerificationError",
    "export_default_backbones",
    "export_efficientnet_lite0",
    "export_int8",
    "export_minilm",
    "export_mpnet",
]

log = logging.getLogger(__name__)

MIN_COSINE = 0.9999


@dataclass(frozen=True)
class ExportOutcome:
    name: str
    folder: Path
    written: bool  # False when the export was already up to date
    card: BackboneCard


def current_card(folder: Path) -> BackboneCard | None:
    """The card of an intact previous export, or None when there is none or it was tampered with."""
    try:
        card = BackboneCard.load(folder)
    except (OSError, ValueError, TypeError):
        return None
    model = model_path(folder)
    if not model.exists() or sha256_of_file(model) != card.fingerprint:
        return None
    if card.tokenizer_file and not (folder / card.tokenizer_file).exists():
        return None
    return card


def _export_unless_current(
    folder: Path,
    force: bool,
    is_up_to_date: Callable[[BackboneCard], bool],
    build: Callable[[], tuple[BackboneCard, bytes, dict[str, bytes]]],
) -> ExportOutcome:
    """The flow of every default recipe: keep an intact, current export; otherwise build (which
    verifies), render config.pbtxt and publish, the card last."""
    current = current_card(folder)
    if current is not None and not force and is_up_to_date(current):
        log.info("%s is up to date (%s)", folder.name, folder)
        return ExportOutcome(folder.name, folder, False, current)
    card, model_bytes, side_files = build()
    config = render_config(card)
    publish_backbone(folder, card, model_bytes, {**side_files, "config.pbtxt": config.encode()})
    log.info("exported %s to %s (fingerprint %s)", card.name, folder, card.fingerprint[:12])
    return ExportOutcome(card.name, folder, True, card)


def export_minilm(
    model_repo: Path, force: bool = False, min_cosine: float = MIN_COSINE, fp16: bool = False
) -> ExportOutcome:
    """Exports all-MiniLM-L6-v2 unless an intact export of the same recipe and weights exists.

    Args:
        model_repo: The model repository to write into.
        force: Export even when up to date.
        min_cosine: The verification threshold against sentence-transformers.
        fp16: Float16 weights and activations, float32 output (export/fp16.py); an export of the
            other precision is not up to date.

    Raises:
        ExportVerificationError: the ONNX model disagrees with the torch model; nothing is written.
    """
    return _export_unless_current(
        model_repo / minilm.NAME,
        force,
        lambda card: minilm.is_up_to_date(card, fp16),
        lambda: minilm.build(list(VERIFICATION_SENTENCES), min_cosine, fp16),
    )


def export_efficientnet_lite0(
    model_repo: Path, force: bool = False, min_cosine: float = MIN_COSINE
) -> ExportOutcome:
    """Exports EfficientNet-Lite0 unless an intact export of the same recipe and weights exists.

    Raises:
        ExportVerificationError: the ONNX model disagrees with the torch model; nothing is written.
    """
    return _export_unless_current(
        model_repo / efficientnet.NAME,
        force,
        efficientnet.is_up_to_date,
        lambda: efficientnet.build(min_cosine),
    )


def export_mpnet(
    model_repo: Path, force: bool = False, min_cosine: float = MIN_COSINE
) -> ExportOutcome:
    """Exports all-mpnet-base-v2 unless an intact export of the same recipe and packages exists.

    Raises:
        HfExportError: the weight packages are missing or damaged; nothing is written.
        ExportVerificationError: the ONNX model disagrees with sentence-transformers; nothing is
            written.
    """
    return _export_unless_current(
        model_repo / mpnet.NAME,
        force,
        mpnet.is_up_to_date,
        lambda: mpnet.build(list(VERIFICATION_SENTENCES), min_cosine),
    )


def export_int8(model_repo: Path, backbone: str, force: bool = False) -> ExportOutcome:
    """Builds `<backbone>-int8` from the float32 text backbone `backbone` of `model_repo`, unless
    an intact variant of the same recipe and source exists; it must pass its accuracy gate.

    Raises:
        ExportVerificationError: no such float32 text backbone, or the variant fails its gate;
            nothing is written.
    """
    source = model_repo / backbone
    if current_card(source) is None:
        raise ExportVerificationError(
            f"no intact export of {backbone!r} in {model_repo} to quantize (export it first)"
        )
    return _export_unless_current(
        model_repo / quantize.variant_name(backbone),
        force,
        lambda card: quantize.is_up_to_date(card, source),
        lambda: quantize.build(source),
    )


def export_default_backbones(
    model_repo: Path, force: bool = False, fp16: bool = False
) -> list[ExportOutcome]:
    """Exports every default backbone into `model_repo`: MiniLM, its int8 variant and MPNet
    (text), EfficientNet-Lite0 (image).

    `fp16` applies to MiniLM (the others are exported in float32), and leaves out the int8
    variant: a float16 repository is for GPUs, where int8 is slow.
    """
    minilm_outcome = export_minilm(model_repo, force=force, fp16=fp16)
    variants = [] if fp16 else [export_int8(model_repo, minilm.NAME, force=force)]
    return [
        minilm_outcome,
        *variants,
        export_mpnet(model_repo, force=force),
        export_efficientnet_lite0(model_repo, force=force),
    ]
