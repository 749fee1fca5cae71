"""Settings: environment twins, flags over environment, contradictions refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.cli import _parser, _settings
from service.config import RuntimeKind, Settings


def test_defaults() -> None:
    settings = Settings()
    assert (settings.grpc_port, settings.metrics_port) == (50051, 9464)
    assert settings.runtime is RuntimeKind.EMBEDDED


def test_environment_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERD_GRPC_PORT", "6000")
    monkeypatch.setenv("TRANSFERD_METRICS_PORT", "6001")
    monkeypatch.setenv("TRANSFERD_DATA_DIR", "/tmp/x")
    monkeypatch.setenv("TRANSFERD_MODEL_REPO", "/tmp/repo")
    settings = Settings()
    assert (settings.grpc_port, settings.metrics_port) == (6000, 6001)
    assert settings.data_dir == Path("/tmp/x") and settings.model_repo == Path("/tmp/repo")


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERD_GRPC_PORT", "6000")
    args = _parser().parse_args(["serve", "--grpc-port", "7000"])
    settings = _settings(args, ("grpc_port", "metrics_port"))
    assert settings.grpc_port == 7000 and settings.metrics_port == 9464


@pytest.mark.parametrize(
    "bad",
    [
        {"grpc_port": 70000},
        {"grpc_port": 7000, "metrics_port": 7000},
        {"max_batch_size": 64, "max_batch_tokens": 10},
        {"runtime": "gpu-please"},
        {"max_inputs_per_request": 0},
        {"no_such_setting": 1},
    ],
)
def test_invalid_or_contradictory_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_invalid_environment_stops_the_cli_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERD_GRPC_PORT", "not-a-port")
    with pytest.raises(SystemExit, match="grpc_port"):
        _settings(_parser().parse_args(["serve"]), ("grpc_port",))


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`TRANSFERD_{name.upper()}`" in readme, name
