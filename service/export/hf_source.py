"""A local Hugging Face model folder: its family, the export options, and hashes of its files.

Everything here but `load_model` reads JSON and hashes files: no torch, no transformers. So a
folder that cannot be exported is refused in a fraction of a second, and an up-to-date export is
recognised without loading the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.backbones.card import sha256_of_file

log = logging.getLogger(__name__)

TEXT_FAMILIES = ("bert", "distilbert", "gpt2", "mpnet", "roberta")
IMAGE_FAMILIES = ("resnet", "vit")
# Causal models: a token sees only the tokens before it, so the first token knows nothing of the
# text ("cls" is refused) and the last one has seen all of it (the default).
CAUSAL_FAMILIES = ("gpt2",)

# Pooling that each family allows; the first is the default.
POOLINGS: dict[str, tuple[str, ...]] = {
    "bert": ("mean", "cls", "last"),
    "distilbert": ("mean", "cls", "last"),
    "roberta": ("mean", "cls", "last"),
    "mpnet": ("mean", "cls", "last"),
    "gpt2": ("last", "mean"),
    "vit": ("cls", "mean"),
    "resnet": ("avg",),
}
# sentence-transformers' Pooling modes that the graph reproduces.
SENTENCE_TRANSFORMERS_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
}

CONFIG_FILE = "config.json"
# What `from_pretrained` reads besides the weights; hashed so that an edited tokenizer or
# preprocessor config makes the export out of date.
TEXT_SIDE_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
IMAGE_SIDE_FILES: tuple[str, ...] = ("preprocessor_config.json",)
# Weights in the order transformers prefers them: safetensors first, then torch's own format.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Models whose base class has an optional pooler (dense + tanh on the first token) that the
# export never uses: not built, so that a folder saved without one is not "missing" weights.
_OPTIONAL_POOLER = ("bert", "mpnet", "roberta", "vit")

# A backbone name is a folder of the model repository and a Triton model name.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# tokenizer_config.json says 1e30 when a tokenizer has no limit of its own.
_NO_LIMIT = 1_000_000


class HfExportError(ValueError):
    """The folder or the options cannot be exported; nothing was written."""


@dataclass(frozen=True)
class HfFolder:
    """A local model folder that holds a supported family and its weights."""

    path: Path
    config: dict[str, Any]
    model_type: str
    modality: str  # "text" or "image"
    weight_files: tuple[Path, ...]
    side_files: tuple[Path, ...]  # config.json and what the tokenizer or preprocessor reads

    @property
    def is_causal(self) -> bool:
        return self.model_type in CAUSAL_FAMILIES


@dataclass(frozen=True)
class ExportOptions:
    """The resolved options of one export (defaults filled in); recorded in the card."""

    pooling: str
    normalize: bool
    max_sequence_length: int | None  # text only


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise HfExportError(
            f"invalid backbone name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise HfExportError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise HfExportError(f"{path} is not a JSON object")
    return data


def _weight_files(path: Path) -> tuple[Path, ...]:
    """The weight files transformers would load: one file, or the shards an index names."""
    for single in WEIGHT_FILES:
        if (path / single).is_file():
            return (path / single,)
        index = path / f"{single}.index.json"
        if index.is_file():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            missing = [s for s in shards if not (path / s).is_file()]
            if not shards or missing:
                raise HfExportError(f"{index} names missing weight shards: {missing or 'none'}")
            return tuple(path / s for s in shards)
    raise HfExportError(
        f"no weights in {path}: expected {' or '.join(WEIGHT_FILES)} (or a sharded index)"
    )


def inspect_folder(path: Path) -> HfFolder:
    """Reads a folder's config and finds its weights, refusing what cannot be exported.

    Raises:
        HfExportError: no folder, no config.json, an unsupported model type, no weights, or no
            tokenizer (text) or preprocessor config (images).
    """
    if not path.is_dir():
        raise HfExportError(f"{path} is not a folder")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise HfExportError(f"{path} has no {CONFIG_FILE}: not a Hugging Face model folder")
    config = _read_json(config_file)
    model_type = config.get("model_type")
    if model_type in TEXT_FAMILIES:
        modality, side_names = "text", TEXT_SIDE_FILES
    elif model_type in IMAGE_FAMILIES:
        modality, side_names = "image", IMAGE_SIDE_FILES
    else:
        raise HfExportError(
            f"unsupported model_type {model_type!r} in {config_file}; supported: text "
            f"{', '.join(TEXT_FAMILIES)}; image {', '.join(IMAGE_FAMILIES)}"
        )
    weights = _weight_files(path)
    if modality == "text" and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise HfExportError(
            f"{path} has no tokenizer ({', '.join(TOKENIZER_FILES)}): a text backbone needs one"
        )
    if modality == "image" and not (path / IMAGE_SIDE_FILES[0]).is_file():
        raise HfExportError(
            f"{path} has no {IMAGE_SIDE_FILES[0]}: the image mean and std are unknown"
        )
    side = (config_file, *(path / f for f in side_names if (path / f).is_file()))
    return HfFolder(path.resolve(), config, model_type, modality, weights, side)


def max_positions(folder: HfFolder) -> int:
    """The longest sequence the model's position embeddings allow."""
    config = folder.config
    if folder.model_type == "gpt2":
        return int(config.get("n_positions") or config["n_ctx"])
    limit = int(config["max_position_embeddings"])
    if folder.model_type in ("mpnet", "roberta"):
        # Both number positions from pad_token_id + 1 (fairseq's convention).
        limit -= int(config.get("pad_token_id", 1)) + 1
    return limit


def sentence_transformers_defaults(folder: HfFolder) -> tuple[str | None, int | None]:
    """How a sentence-transformers folder (one with modules.json) pools and how long it reads.

    Returns:
        (pooling or None, max_seq_length or None): None where the folder does not say, or says
        something this exporter cannot reproduce (e.g. max pooling: the family default applies).
    """
    path = folder.path
    if not (path / "modules.json").is_file():
        return None, None
    length = None
    if (path / "sentence_bert_config.json").is_file():
        declared = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
        length = declared if isinstance(declared, int) and declared > 0 else None
    pooling = None
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        modules = []
    for module in modules if isinstance(modules, list) else []:
        if str(module.get("type", "")).endswith(".Pooling"):
            config_file = path / str(module.get("path", "")) / "config.json"
            modes = _read_json(config_file) if config_file.is_file() else {}
            enabled = [
                key for key, value in modes.items() if key.startswith("pooling_mode_") and value
            ]
            if len(enabled) == 1 and enabled[0] in SENTENCE_TRANSFORMERS_POOLING:
                pooling = SENTENCE_TRANSFORMERS_POOLING[enabled[0]]
            else:
                log.warning(
                    "%s: sentence-transformers pooling %s is not supported; using the %s "
                    "default unless --pooling says otherwise",
                    path,
                    enabled,
                    folder.model_type,
                )
    return pooling, length


def default_max_sequence_length(folder: HfFolder, declared: int | None = None) -> int:
    """`declared` (sentence-transformers' length) if given, else the model's limit or the
    tokenizer's `model_max_length` when that is smaller; never more than the model allows."""
    limit = max_positions(folder)
    if declared is not None:
        return min(limit, declared)
    tokenizer_config = folder.path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        declared = _read_json(tokenizer_config).get("model_max_length")
        if isinstance(declared, int | float) and 0 < declared < _NO_LIMIT:
            limit = min(limit, int(declared))
    return limit


def resolve_options(
    folder: HfFolder,
    pooling: str | None,
    max_sequence_length: int | None,
    normalize: bool | None,
) -> ExportOptions:
    """Fills in the family's defaults and refuses options the family cannot honour.

    Defaults: what a sentence-transformers folder declares (pooling, max_seq_length), else
    pooling `mean` for encoders, `last` for GPT-2, `cls` for ViT, `avg` for ResNet; L2
    normalisation on for text, off for images; the model's (or tokenizer's) length limit.

    Raises:
        HfExportError: a pooling the family does not support, or a length out of range.
    """
    allowed = POOLINGS[folder.model_type]
    st_pooling, st_length = (
        sentence_transformers_defaults(folder) if folder.modality == "text" else (None, None)
    )
    chosen = pooling or st_pooling or allowed[0]
    if chosen not in allowed:
        why = " (a causal model's first token sees only itself)" if folder.is_causal else ""
        raise HfExportError(
            f"pooling {chosen!r} is not supported for {folder.model_type}{why}; "
            f"choose one of: {', '.join(allowed)}"
        )
    if folder.modality == "image":
        if max_sequence_length is not None:
            raise HfExportError("--max-sequence-length applies to text models only")
        return ExportOptions(chosen, bool(normalize), None)
    limit = max_positions(folder)
    length = max_sequence_length or default_max_sequence_length(folder, st_length)
    if not 1 <= length <= limit:
        raise HfExportError(
            f"max sequence length {length} is out of range: {folder.model_type} at {folder.path} "
            f"allows 1 to {limit} tokens"
        )
    return ExportOptions(chosen, True if normalize is None else normalize, length)


def _digest(files: tuple[Path, ...]) -> str:
    """SHA-256 of one file, or of the names and hashes of several (sharded weights)."""
    if len(files) == 1:
        return sha256_of_file(files[0])
    lines = "".join(f"{f.name} {sha256_of_file(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def source_info(folder: HfFolder) -> dict[str, str]:
    """Where the weights come from, for the card; the up-to-date check compares it whole."""
    return {
        "path": str(folder.path),
        "model_type": folder.model_type,
        "architecture": ",".join(folder.config.get("architectures") or []),
        "weights": ",".join(f.name for f in folder.weight_files),
        "weights_sha256": _digest(folder.weight_files),
        "files": ",".join(f.name for f in folder.side_files),
        "files_sha256": _digest(folder.side_files),
    }


def load_model(folder: HfFolder) -> Any:
    """The folder's base model on torch, in eval mode, with eager attention where it has any.

    Raises:
        HfExportError: the weights do not cover the model (some of it would be randomly
            initialised: a folder of another architecture, or a truncated checkpoint).
    """
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    # Loading reports and progress bars are noise here; missing weights are checked below.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    options: dict[str, Any] = {"output_loading_info": True}
    if folder.model_type != "resnet":
        # Eager attention traces to the plain MatMul/Softmax pattern that ONNX Runtime fuses, and
        # depends on no mask shortcut that SDPA would bake into the trace.
        options["attn_implementation"] = "eager"
    if folder.model_type in _OPTIONAL_POOLER:
        options["add_pooling_layer"] = False
    model, info = AutoModel.from_pretrained(str(folder.path), **options)
    missing = sorted(info.get("missing_keys") or ()) + sorted(info.get("mismatched_keys") or ())
    if missing:
        shown = ", ".join(str(k) for k in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise HfExportError(
            f"the weights in {folder.path} do not cover the {folder.model_type} model "
            f"({len(missing)} missing or mismatched: {shown})"
        )
    return model.eval()
