"""Triton settings: the URL is host:port, refused at start-up otherwise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import RuntimeKind, Settings


def test_triton_runtime_and_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERD_RUNTIME", "triton")
    monkeypatch.setenv("TRANSFERD_TRITON_URL", "triton.ml.svc:8001")
    monkeypatch.setenv("TRANSFERD_TRITON_TIMEOUT_S", "2.5")
    settings = Settings()
    assert settings.runtime is RuntimeKind.TRITON
    assert settings.triton_url == "triton.ml.svc:8001" and settings.triton_timeout_s == 2.5


@pytest.mark.parametrize(
    "url", ["http://triton:8001", "triton", "triton:", ":8001", "triton:http", "triton:70000"]
)
def test_a_url_that_is_not_host_port_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(triton_url=url)


@pytest.mark.parametrize(
    "bad", [{"triton_timeout_s": 0}, {"triton_retries": -1}, {"triton_probe_interval_s": 0}]
)
def test_impossible_triton_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)
