"""Export of a text encoder from a local Hugging Face folder: BERT, RoBERTa, DistilBERT, MPNet,
GPT-2.

Generalises the MiniLM recipe: eager attention, a wrapper that puts pooling (`mean` over the
mask, `cls` = first token, `last` = last real token) and optional L2 normalisation inside the
graph, the TorchScript exporter, ONNX Runtime's transformer fusion. The graph takes the same two
int64 inputs as MiniLM (`input_ids`, `attention_mask`, right-padded), so the gateway serves it
unchanged; BERT's token type ids are zeros made inside the graph.

Verification runs the serving path on the exported files (the exported tokenizer.json, one padded
batch, ONNX Runtime) against the torch model fed each sentence alone, unpadded, with the folder's
own tokenizer, and pooled outside the graph. torch and transformers are imported here only.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.backbones.card import BackboneCard, sha256_of_file
from service.export.contract import OPSET, OUTPUT_NAME, TEXT_INPUT_NAMES
from service.export.hf_source import ExportOptions, HfExportError, HfFolder, load_model
from service.export.text_graph import export_text_encoder
from service.export.verify import check_min_cosine

log = logging.getLogger(__name__)

# Bump when the graph or the files written change: an up-to-date check compares it.
RECIPE = "hf-text-pool-fused/1"
TOKENIZER_FILE = "tokenizer.json"

# ONNX Runtime's fusion family for each model type (attention, LayerNorm, GELU fused).
_FUSION_TYPE = {
    "bert": "bert", "roberta": "bert", "distilbert": "bert", "mpnet": "bert", "gpt2": "gpt2"
}  # fmt: skip


def dims(folder: HfFolder) -> tuple[int, int]:
    """(hidden size, attention heads) from the config, whatever the family calls them."""
    config = folder.config
    if folder.model_type == "distilbert":
        return int(config["dim"]), int(config["n_heads"])
    if folder.model_type == "gpt2":
        return int(config["n_embd"]), int(config["n_head"])
    return int(config["hidden_size"]), int(config["num_attention_heads"])


def pad_token_id(folder: HfFolder) -> int:
    """The id the graph puts under padding: the model's pad token, else eos (GPT-2 has no pad)."""
    for key in ("pad_token_id", "eos_token_id"):
        value = folder.config.get(key)
        if isinstance(value, int):
            return value
    return 0


def load_tokenizer(folder: HfFolder) -> Any:
    """The folder's fast tokenizer (converted from vocab files when there is no tokenizer.json).

    Raises:
        HfExportError: transformers cannot build a fast (Rust `tokenizers`) tokenizer from it.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder.path))
    except Exception as error:
        raise HfExportError(f"cannot load the tokenizer of {folder.path}: {error}") from error
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise HfExportError(
            f"the tokenizer of {folder.path} has no fast (tokenizers) version; serving needs one"
        )
    return tokenizer


def serving_tokenizer_json(tokenizer: Any, max_sequence_length: int) -> bytes:
    """The folder's tokenizer as the gateway uses it: truncation at the limit, no padding."""
    from tokenizers import Tokenizer

    serving = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    serving.no_padding()
    serving.enable_truncation(max_length=max_sequence_length)
    return serving.to_str().encode()


def _wrapper(folder: HfFolder, options: ExportOptions) -> Any:
    """The encoder with the padding fix-up, pooling and normalisation around it, as one module."""
    import torch

    pad_id = pad_token_id(folder)
    pass_token_types = "type_vocab_size" in folder.config  # BERT and RoBERTa take them

    class TextEncoder(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            # The gateway pads with 0; the model's own pad id under the mask reproduces what its
            # tokenizer would pad with (RoBERTa and MPNet number positions by it; GPT-2 has none: eos).
            ids = torch.where(attention_mask > 0, input_ids, torch.full_like(input_ids, pad_id))
            extra = {"token_type_ids": torch.zeros_like(ids)} if pass_token_types else {}
            hidden = self.model(input_ids=ids, attention_mask=attention_mask, **extra)[0]
            pooled = pool(hidden, attention_mask, options.pooling)
            if options.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return TextEncoder(load_model(folder)).eval()


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """Pools right-padded hidden states [N, L, H] under the mask [N, L] to [N, H] (torch)."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        # Right padding: the last real token is at mask.sum() - 1. Selected by a one-hot weight
        # rather than a gather, so that the graph's output keeps a static last axis (H), which
        # the serving runtime checks against the card's dim.
        last = (mask.sum(dim=1, keepdim=True) - 1).clamp(min=0)
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        pick = (positions == last).unsqueeze(-1).to(hidden.dtype)
        return (hidden * pick).sum(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def export_onnx(folder: HfFolder, options: ExportOptions, out_file: Path) -> None:
    """Traces encoder + pooling + normalisation to ONNX, then fuses it for ONNX Runtime."""
    hidden, heads = dims(folder)
    export_text_encoder(
        _wrapper(folder, options),
        out_file,
        fusion_type=_FUSION_TYPE[folder.model_type],
        num_heads=heads,
        hidden_size=hidden,
    )


def reference_embeddings(
    folder: HfFolder, options: ExportOptions, tokenizer: Any, sentences: list[str]
) -> np.ndarray:
    """The torch model on each sentence alone (no padding at all), pooled outside the graph."""
    import torch

    model = load_model(folder)
    rows = []
    with torch.no_grad():
        for sentence in sentences:
            ids = tokenizer(sentence, truncation=True, max_length=options.max_sequence_length)[
                "input_ids"
            ]
            hidden = model(input_ids=torch.tensor([ids]))[0][0]  # [L, H]
            if options.pooling == "cls":
                vector = hidden[0]
            elif options.pooling == "last":
                vector = hidden[-1]
            else:
                vector = hidden.mean(dim=0)
            if options.normalize:
                vector = vector / vector.norm()
            rows.append(vector.numpy())
    return np.stack(rows)


def onnx_embeddings(
    model_file: Path, tokenizer_file: Path, max_sequence_length: int, sentences: list[str]
) -> tuple[np.ndarray, int]:
    """The serving path: the gateway's tokenizer and collation, all sentences in one batch.

    One batch that mixes a 3-token text with a truncated one checks that padding is masked out.

    Returns:
        The embeddings, and how many sentences the tokenizer truncated.
    """
    import onnxruntime as ort

    from service.backbones.modalities.text_batches import collate_text
    from service.backbones.modalities.text_preprocessing import TextPreprocessor

    items = TextPreprocessor(tokenizer_file, max_sequence_length).tokenize(sentences)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], collate_text(items))
    return out, sum(item.truncated for item in items)


@dataclass(frozen=True)
class Reference:
    """What an export is verified against: embeddings of the sentences, and how to say so."""

    embed: Callable[[list[str]], np.ndarray]
    description: str


def transformers_reference(folder: HfFolder, options: ExportOptions, tokenizer: Any) -> Reference:
    """The torch model on each sentence alone through the folder's own tokenizer (the default)."""
    return Reference(
        lambda sentences: reference_embeddings(folder, options, tokenizer, sentences),
        "vs the torch model on each sentence alone",
    )


def sentence_transformers_reference(folder: Path) -> Reference:
    """The source model's own output: sentence-transformers on torch over `folder` (a
    sentence-transformers folder), 8 sentences a batch."""

    def embed(sentences: list[str]) -> np.ndarray:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu")
        return model.encode(sentences, batch_size=8, convert_to_numpy=True, show_progress_bar=False)

    return Reference(embed, "vs sentence-transformers (torch)")


def build(
    folder: HfFolder,
    options: ExportOptions,
    name: str,
    source: dict[str, str],
    sentences: list[str],
    min_cosine: float,
    recipe: str = RECIPE,
    reference: Reference | None = None,
) -> tuple[BackboneCard, bytes, dict[str, bytes]]:
    """Exports and verifies; returns the card, the model and the side files, written nowhere yet.

    Args:
        recipe: The card's recipe (a default backbone has its own, see export/mpnet.py).
        reference: What to verify against; None: `transformers_reference`.

    Raises:
        HfExportError: the tokenizer cannot be served.
        ExportVerificationError: ONNX Runtime disagrees with the reference.
    """
    assert options.max_sequence_length is not None
    tokenizer = load_tokenizer(folder)
    tokenizer_json = serving_tokenizer_json(tokenizer, options.max_sequence_length)
    reference = reference or transformers_reference(folder, options, tokenizer)
    with tempfile.TemporaryDirectory(prefix="transferd-export-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        tokenizer_file = Path(tmp) / TOKENIZER_FILE
        tokenizer_file.write_bytes(tokenizer_json)
        export_onnx(folder, options, model_file)
        exported, truncated = onnx_embeddings(
            model_file, tokenizer_file, options.max_sequence_length, sentences
        )
        worst = check_min_cosine(reference.embed(sentences), exported, min_cosine)
        log.info(
            "%s verified on %d sentences (%d truncated at %d tokens): min cosine %.7f",
            name, len(sentences), truncated, options.max_sequence_length, worst,
        )  # fmt: skip
        card = BackboneCard(
            name=name,
            modality="text",
            dim=dims(folder)[0],
            fingerprint=sha256_of_file(model_file),
            input_names=TEXT_INPUT_NAMES,
            output_name=OUTPUT_NAME,
            pooling=options.pooling,
            normalized=options.normalize,
            source=source,
            export={
                "recipe": recipe,
                "opset": OPSET,
                "verified_min_cosine": round(worst, 7),
                "verified_on": (
                    f"{len(sentences)} sentences ({truncated} truncated), one padded batch "
                    f"through the exported tokenizer.json, {reference.description}"
                ),
            },
            tokenizer_file=TOKENIZER_FILE,
            max_sequence_length=options.max_sequence_length,
        )
        return card, model_file.read_bytes(), {TOKENIZER_FILE: tokenizer_json}
