"""The fast test tier (`make test-fast`): the unit tests that need no torch, subprocess or model.

Loaded as a plugin (``pytest -p tests.support.fast_tier tests/unit``). It leaves out the unit
tests listed in `EXCLUDED` (by node id prefix; a whole file is not even imported), and guards the
rest: a test that imports torch, or whose own code starts a subprocess, fails, saying to list it
here, so the tier stays fast as tests are added. `make test` runs everything, these included.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADS = "tests/unit/heads/"

#: Node id prefix → why the fast tier leaves it out.
EXCLUDED: dict[str, str] = {
    f"{HEADS}test_heads_mlp.py": "the torch mlp kind, and a Python subprocess",
    f"{HEADS}test_heads_budget.py::test_a_stop_request_ends_mlp_training": "trains mlp (torch)",
    f"{HEADS}test_heads_kinds.py::test_kind_learns_separable_data[mlp-": "trains mlp (torch)",
    f"{HEADS}test_heads_kinds.py::test_rare_classes_train_with_every_kind": "every kind: mlp too",
    f"{HEADS}test_heads_kinds.py::test_multi_label_with_label_on_every_example": "every kind: mlp too",
    f"{HEADS}test_heads_onnx.py::test_export_follows_contract_and_matches_fitted_model[mlp-": (
        "trains mlp (torch)"
    ),
    f"{HEADS}test_heads_onnx.py::test_verification_rejects_a_model_onnx_pair_that_disagree[mlp-": (
        "trains mlp (torch)"
    ),
    f"{HEADS}test_heads_kind_choice.py::test_train_head_auto_records": "every candidate: mlp too",
    "tests/unit/test_cli_progress.py::test_a_terminal_gets_a_bar": (
        "a Python subprocess, its stderr on a pty"
    ),
}

_HINT = "add it to EXCLUDED in tests/support/fast_tier.py (make test still runs it)"


class SubprocessRefused(OSError):
    """Raised in place of a subprocess that the project's code or tests start in the fast tier."""


_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
_VENV = Path(sys.prefix).resolve()


def _started_by_the_project() -> bool:
    """Whether the nearest caller outside the standard library is the project's own code.

    Libraries may run a system tool now and then (joblib counts physical cores with lscpu):
    that is theirs to handle and is let through; a test or service module is not.
    """
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if not path.is_relative_to(_STDLIB):
            return path.is_relative_to(ROOT) and not path.is_relative_to(_VENV)
        frame = frame.f_back
    return False


class _GuardedPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _started_by_the_project():
            raise SubprocessRefused(f"the fast test tier starts no subprocess: {_HINT}")
        super().__init__(*args, **kwargs)


_real_popen = subprocess.Popen


def _excluded(nodeid: str) -> bool:
    return any(nodeid.startswith(prefix) for prefix in EXCLUDED)


def pytest_configure(config: pytest.Config) -> None:
    subprocess.Popen = _GuardedPopen  # type: ignore[misc]


def pytest_unconfigure(config: pytest.Config) -> None:
    subprocess.Popen = _real_popen  # type: ignore[misc]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Whole files left out are not imported at all."""
    try:
        relative = collection_path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None
    return True if relative in EXCLUDED else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    left_out = [item for item in items if _excluded(item.nodeid)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _excluded(item.nodeid)]
    if "torch" in sys.modules:
        raise pytest.UsageError(f"a test module of the fast tier imports torch: {_HINT}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fails a test that imported torch (the first to do so: later ones find it imported)."""
    had_torch = "torch" in sys.modules
    result = yield
    if not had_torch and "torch" in sys.modules:
        pytest.fail(f"{item.nodeid} imported torch, which the fast tier never loads: {_HINT}")
    return result
