"""Source hygiene: heads never pickles, and never reaches into the service or gRPC."""

from __future__ import annotations

import re
from pathlib import Path

import heads

HEADS_DIR = Path(heads.__file__).parent
FORBIDDEN = ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "service", "grpc", "google")
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+(?:\s*,\s*[\w.]+)*))", re.M)


def test_no_forbidden_imports() -> None:
    sources = sorted(HEADS_DIR.rglob("*.py"))
    assert len(sources) > 5
    offenders = []
    for path in sources:
        for match in IMPORT.finditer(path.read_text()):
            modules = match.group(1) or match.group(2)
            for module in re.split(r"\s*,\s*", modules):
                if module.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(HEADS_DIR)}: {module}")
    assert offenders == []


def test_no_pickle_apis_used() -> None:
    for path in HEADS_DIR.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\b(pickle|joblib)\.\w+\(", text), path
        assert "__import__(" not in text and "importlib" not in text, path
