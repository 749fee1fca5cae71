"""Fixtures shared by every test: the exported model repository and real text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
BACKBONE = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def model_repo() -> Path:
    """The model repository `make test` exported into (exported here if it is missing)."""
    repo = Path(os.environ.get("TRANSFERD_MODEL_REPO", ROOT / "model_repo")).resolve()
    if not (repo / BACKBONE / "backbone.json").exists():
        from service.export import export_default_backbones

        export_default_backbones(repo)
    return repo


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """Real sentences of varied length and language."""
    return [line for line in (DATA / "sentences.txt").read_text().splitlines() if line.strip()]
