"""Source hygiene: heads never pickles, and never reaches into the service or gRPC.

torch is allowed, but only in the ``mlp`` kind's torch modules, which nothing imports at module
level (`test_heads_mlp` checks that ``import heads`` leaves torch unimported).
"""

from __future__ import annotations

import re
from pathlib import Path

import heads

HEADS_DIR = Path(heads.__file__).parent
FORBIDDEN = ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "service", "grpc", "google")
#: ``importlib.util.find_spec`` only looks a package up (whether torch is installed); it imports
#: nothing, so it is the one importlib use allowed.
FIND_SPEC = "from importlib.util import find_spec"
TORCH_MODULES = {"kinds/mlp_train.py", "kinds/mlp_model.py"}
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
        assert not re.search(r"\btorch\.(save|load)\(", text), path  # both pickle
        text = text.replace(FIND_SPEC, "")
        assert "__import__(" not in text and "importlib" not in text, path


def test_torch_imported_at_module_level_only_by_the_mlp_torch_modules() -> None:
    for path in HEADS_DIR.rglob("*.py"):
        top_level = re.findall(r"^(?:import|from)\s+torch\b", path.read_text(), re.M)
        relative = path.relative_to(HEADS_DIR).as_posix()
        assert not top_level or relative in TORCH_MODULES, relative
