"""`transferd export --hf-model PATH --name NAME`: an operator's own Hugging Face model as a backbone.

Text (BERT, RoBERTa, DistilBERT, MPNet, GPT-2) or image (ViT, ResNet), chosen by the folder's
config.json. Verified and published like the default backbones; nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from service.backbones.card import BackboneCard
from service.export import MIN_COSINE, ExportOutcome, current_card, hf_text, hf_vision
from service.export.hf_source import (
    ExportOptions,
    HfExportError,
    check_name,
    inspect_folder,
    resolve_options,
    source_info,
)
from service.export.publish import publish_backbone
from service.export.sentences import VERIFICATION_SENTENCES
from service.export.triton_config import render_config
from service.export.verify import ExportVerificationError

__all__ = ["HfExportError", "export_hf_model"]

log = logging.getLogger(__name__)

HF_RECIPE_PREFIX = "hf-"


def is_up_to_date(
    card: BackboneCard, recipe: str, source: dict[str, str], options: ExportOptions
) -> bool:
    """Same recipe, same source files (weights, config, tokenizer or preprocessor), same options."""
    return (
        card.export.get("recipe") == recipe
        and card.source == source
        and card.pooling == options.pooling
        and card.normalized == options.normalize
        and card.max_sequence_length == options.max_sequence_length
    )


def _check_serveable(card: BackboneCard, model_bytes: bytes) -> None:
    """The serving runtime's own start-up check: input names and a static output of card.dim."""
    import onnxruntime as ort

    from service.backbones.runtimes.base import BackboneLoadError
    from service.backbones.runtimes.embedded import check_session_matches_card

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    try:
        check_session_matches_card(session, card)
    except BackboneLoadError as error:
        raise ExportVerificationError(f"the exported graph cannot be served: {error}") from error


def export_hf_model(
    model_repo: Path,
    model_dir: Path,
    name: str,
    pooling: str | None = None,
    max_sequence_length: int | None = None,
    normalize: bool | None = None,
    force: bool = False,
    min_cosine: float = MIN_COSINE,
) -> ExportOutcome:
    """Exports the model in `model_dir` as backbone `name`, unless that export is up to date.

    Args:
        model_repo: The model repository.
        model_dir: A local Hugging Face folder (config.json, weights, tokenizer or preprocessor).
        name: The backbone's name (its folder in the repository).
        pooling: mean, cls or last (text); cls or mean (ViT); avg (ResNet). None: the default.
        max_sequence_length: Text only; None: the model's (or its tokenizer's) limit.
        normalize: L2-normalise the embedding; None: on for text, off for images.
        force: Export even when up to date, and replace a backbone exported from elsewhere.

    Raises:
        HfExportError: the folder or the options cannot be exported, or `name` is taken by a
            backbone from another source (without `force`); nothing is written.
        ExportVerificationError: ONNX Runtime disagrees with the torch model; nothing is written.
    """
    check_name(name)
    folder = inspect_folder(model_dir)
    options = resolve_options(folder, pooling, max_sequence_length, normalize)
    source = source_info(folder)
    target = model_repo / name
    recipe = hf_text.RECIPE if folder.modality == "text" else hf_vision.RECIPE

    current = current_card(target)
    if current is not None and not force:
        if is_up_to_date(current, recipe, source, options):
            log.info("%s is up to date (%s)", name, target)
            return ExportOutcome(name, target, False, current)
        previous = current.source.get("path", current.source.get("package", "?"))
        if not str(current.export.get("recipe", "")).startswith(HF_RECIPE_PREFIX) or (
            previous != source["path"]
        ):
            raise HfExportError(
                f"backbone {name!r} already exists in {model_repo}, exported from {previous}; "
                "choose another --name, or pass --force to replace it (heads bound to it will "
                "then refuse to predict)"
            )

    log.info("exporting %s (%s, %s) from %s", name, folder.model_type, options, folder.path)
    if folder.modality == "text":
        card, model_bytes, side_files = hf_text.build(
            folder, options, name, source, list(VERIFICATION_SENTENCES), min_cosine
        )
    else:
        card, model_bytes, side_files = hf_vision.build(folder, options, name, source, min_cosine)
    config = render_config(card)
    _check_serveable(card, model_bytes)
    publish_backbone(target, card, model_bytes, {**side_files, "config.pbtxt": config.encode()})
    log.info("exported %s to %s (fingerprint %s)", name, target, card.fingerprint[:12])
    return ExportOutcome(name, target, True, card)
