"""Triton fixtures: the real tritonserver (CPU, python backend) and a gateway with runtime=triton.

They are defined once, in tests/integration/servers.py (registered here as a plugin, as in
tests/integration/conftest.py), so that this folder and the integration tests marked
`both_runtimes` share one tritonserver and one gateway. Every test here that uses the shared
server (`server`, `channel`, the stubs) runs with runtime "triton".
"""

from __future__ import annotations

import pytest

from tests.integration import servers
from tests.integration.servers import (  # noqa: F401 - helpers, imported from here by the tests
    PYTHON_ENV,
    start_triton,
    start_triton_gateway,
    triton_gateway_process,
)


def pytest_configure(config: pytest.Config) -> None:
    servers.register(config)
