"""The README's example script runs as written against a real server."""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.launcher import ServerProcess
from tests.conftest import ROOT


def test_train_first_head_example(server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "examples/train_first_head.py", "--address", server.address],
        cwd=ROOT, env={**os.environ, "TRANSFERD_ADMIN_KEY": server.admin_key},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "JOB_STATE_SUCCEEDED" in out and "head support-topics v1" in out
    assert "'You took the money from my card two times.' -> billing" in out
    assert "'The program freezes when I click save.' -> technical" in out
    assert "'Where is my package? It was due on Monday.' -> shipping" in out
