"""The README's Python snippet runs as written (against a server of its own on a free port)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import start_server


def test_readme_python_snippet_runs(tmp_path: Path, model_repo: Path) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    server = start_server(tmp_path, model_repo, TRANSFERD_ADMIN_KEY="change-me")
    try:
        # The README talks to `make serve` on the default port; this server has a free one.
        code = snippet.replace("localhost:50051", server.address)
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    dim, cosine = result.stdout.strip().splitlines()[-1].split()
    assert dim == "384" and 0.5 < float(cosine) < 1.0  # related sentences, not the same one
    assert 'name: "all-minilm-l6-v2"' in result.stdout
