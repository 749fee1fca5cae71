"""The README's Python snippets and its command-line walk-through run as written (against a
server of their own on a free port)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import start_server


def _python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_snippets_run(tmp_path: Path, model_repo: Path) -> None:
    """The client snippet, then the raw-stub one, each on a server of its own (both create the
    tenant acme): each lists the backbones and prints the dim and a cosine."""
    snippets = [s for s in _python_snippets() if "tritonclient" not in s]
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


def test_readme_command_line_and_inference_protocol_snippets_run(
    tmp_path: Path, model_repo: Path
) -> None:
    """The command-line walk-through, in bash against a server of its own: it makes a tenant and
    a key, trains from examples/tickets.jsonl, predicts as JSON and plots the matrix; then the
    Open Inference Protocol snippet calls that head and a backbone through tritonclient."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [script] = [block for block in blocks if "transferd heads train" in block]
    [oip] = [s for s in _python_snippets() if "tritonclient" in s]
    (tmp_path / "server").mkdir()
    server = start_server(tmp_path / "server", model_repo, TRANSFERD_ADMIN_KEY="change-me")
    try:
        # The README runs in the checkout; here in a folder of its own, so the plot lands there.
        script = script.replace(".venv/bin/", f"{ROOT}/.venv/bin/")
        script = script.replace("examples/", f"{ROOT}/examples/")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFERD_")}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script + 'echo "key $TRANSFERD_API_KEY"\n'],
            cwd=tmp_path,
            env=env | {"TRANSFERD_URL": server.address},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        key = result.stdout.splitlines()[-1].removeprefix("key ")
        code = oip.replace("localhost:50051", server.address).replace("<API key>", key)
        inference = subprocess.run(
            [sys.executable, "-c", code + "print(vectors.shape)\n"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    predicted = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [p["label"] for p in predicted] == ["billing"]
    assert "validation confusion matrix" in result.stdout
    assert (tmp_path / "tickets.png").stat().st_size > 0
    assert inference.returncode == 0, inference.stderr
    labels_line, shape = inference.stdout.strip().splitlines()
    assert labels_line.startswith("[b'technical' b'shipping']") and "'billing':" in labels_line
    assert shape == "(2, 384)"


def test_readme_tenant_and_key_commands_run(tmp_path: Path, minilm_repo: Path) -> None:
    """The admin walk-through of "Tenants, keys and the audit log", in bash against a server of
    its own: it ends by deleting the tenant it made, and lists no secret on the way."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [script] = [block for block in blocks if "transferd tenants delete" in block]
    server = start_server(tmp_path, minilm_repo, TRANSFERD_ADMIN_KEY="change-me")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFERD_")}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(".venv/bin/", f"{ROOT}/.venv/bin/")],
            cwd=tmp_path,
            env=env | {"TRANSFERD_URL": server.address},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    made, secret, *rest = result.stdout.splitlines()
    assert made == "acme"
    assert secret.startswith("tdk_") and secret not in "\n".join(rest)
    [key] = json.loads(next(line for line in rest if line.startswith("[")))
    assert key["expires_at"] and not key["expired"] and not key["revoked_at"]
    assert rest[-1].startswith("deleted acme: 1 keys")
