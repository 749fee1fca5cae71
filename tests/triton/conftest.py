"""Triton fixtures: the real tritonserver (CPU, python backend) and a gateway with runtime=triton.

The gateway fixtures keep the integration tests' names (`server`, `channel`, `embedding_stub`), so
that the integration checks imported into this folder run unchanged against a Triton-backed
gateway; the API-key fixtures are the integration ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.launcher import ServerProcess
from devtools.triton.process import TritonProcess
from tests.conftest import ROOT
from tests.integration.conftest import (  # noqa: F401 - fixtures, re-exported for this folder
    channel,
    embedding_stub,
    heads_stub,
    reference_model,
    start_server,
    tenant_key,
)

# Shared with `make triton`: created once by `make setup`, reused by every test run.
PYTHON_ENV = ROOT / "build" / "triton-python-env"


def start_triton(workdir: Path, model_repo: Path) -> TritonProcess:
    """The real tritonserver on free loopback ports over the CPU flavour of `model_repo`."""
    return TritonProcess(model_repo, workdir, python_env=PYTHON_ENV).start()


def start_triton_gateway(tmp: Path, model_repo: Path, triton_url: str, **env: str) -> ServerProcess:
    """`transferd serve` with runtime=triton; short probe and backoff so that tests run quickly."""
    tmp.mkdir(parents=True, exist_ok=True)
    return start_server(
        tmp,
        model_repo,
        TRANSFERD_RUNTIME="triton",
        TRANSFERD_TRITON_URL=triton_url,
        TRANSFERD_TRITON_PROBE_INTERVAL_S="0.25",
        TRANSFERD_TRITON_RETRY_BACKOFF_S="0.05",
        **{"TRANSFERD_DRAIN_DELAY_S": "0", **env},
    )


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[TritonProcess]:
    process = start_triton(tmp_path_factory.mktemp("triton"), model_repo)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path, triton: TritonProcess
) -> Iterator[ServerProcess]:
    """The gateway every imported integration check talks to, backed by the shared Triton."""
    process = start_triton_gateway(tmp_path_factory.mktemp("gateway"), model_repo, triton.grpc_url)
    yield process
    process.stop()
