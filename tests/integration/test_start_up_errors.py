"""Settings a replica cannot start with end `transferd serve` at once with one clear line: a
database that cannot be reached, a metrics port another replica holds; `transferd repair` refuses
a PostgreSQL store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import server_process
from tests.support.postgres import postgres_url


def _exit_of(tmp: Path, model_repo: Path, **env: str) -> str:
    """The output of a `transferd serve` that must exit by itself, non-zero."""
    replica = server_process(tmp, model_repo, **env)
    with pytest.raises(RuntimeError, match="server exited with 1"):
        replica.start()
    assert replica.process is not None and replica.process.returncode == 1
    return (tmp / "server.log").read_text()


def test_an_unreachable_database_is_named_without_a_traceback(
    tmp_path: Path, model_repo: Path
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = postgres_url("transferd", f"postgres@127.0.0.1:{port}")
    output = _exit_of(tmp_path, model_repo, TRANSFERD_DATABASE_URL=url)
    assert f"transferd: cannot serve: the database (PostgreSQL at 127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_a_metrics_port_in_use_is_named_without_a_traceback(
    tmp_path: Path, model_repo: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = _exit_of(tmp_path, model_repo, TRANSFERD_METRICS_PORT=str(port))
    assert f"transferd: cannot serve: cannot serve metrics on 127.0.0.1:{port}" in output
    assert "TRANSFERD_METRICS_PORT" in output and "Traceback" not in output


def test_repair_refuses_a_postgresql_store_clearly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "repair"],
        env={
            **os.environ,
            "TRANSFERD_DATA_DIR": str(tmp_path),
            "TRANSFERD_DATABASE_URL": postgres_url("transferd"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "nothing to repair from the files" in done.stderr and "Traceback" not in done.stderr


def test_cuda_demanded_without_the_cuda_provider_is_named_without_a_traceback(
    tmp_path: Path, model_repo: Path
) -> None:
    """This machine's ONNX Runtime has no CUDA provider: TRANSFERD_DEVICE=cuda stops start-up
    with the remedy, where the default (auto) serves on the CPU."""
    output = _exit_of(tmp_path, model_repo, TRANSFERD_DEVICE="cuda")
    assert "transferd: cannot serve: TRANSFERD_DEVICE=cuda, but this ONNX Runtime has no " in (
        output
    )
    assert "transferd[gpu]" in output and "Traceback" not in output
