"""The README's Python snippets run as written (against a server of their own on a free port)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import start_server


def test_readme_python_snippets_run(tmp_path: Path, model_repo: Path) -> None:
    """The client snippet, then the raw-stub one, each on a server of its own (both create the
    tenant acme): each lists the backbones and prints the dim and a cosine."""
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(snippets) == 2
    for index, snippet in enumerate(snippets):
        folder = tmp_path / str(index)
        folder.mkdir()
        server = start_server(folder, model_repo, TRANSFERD_ADMIN_KEY="change-me")
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
        assert "all-minilm-l6-v2" in result.stdout
