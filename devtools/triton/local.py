"""Runs a local CPU `tritonserver` over the CPU flavour of the model repository.

The server is the one shipped in the PyPI wheel `nvidia-pytriton` (Triton 2.51, CPU, python
backend only). `make triton` runs it in the foreground (`python -m devtools.triton.local`);
the Triton tests and the benchmark start it as a child process on free loopback ports
(`devtools.triton.process.TritonProcess`). Both go through `prepare` here, so what the
tests run is what a developer runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import secrets
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from devtools.triton.cpu_repo import CpuModelOptions, write_cpu_repository
from devtools.triton.python_env import ensure_python_env

log = logging.getLogger(__name__)

STUB = "triton_python_backend_stub"


class TritonNotInstalled(RuntimeError):
    """The `nvidia-pytriton` wheel (which ships tritonserver) is not installed."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel keeps the server, the python backend, its stubs and its shared libraries."""

    root: Path  # site-packages/pytriton/tritonserver

    @classmethod
    def find(cls) -> TritonDistribution:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotInstalled(
                "tritonserver comes from the PyPI wheel nvidia-pytriton: "
                "pip install --no-deps nvidia-pytriton (make setup does it)"
            )
        return cls(Path(next(iter(spec.submodule_search_locations))) / "tritonserver")

    @property
    def server(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        # auditwheel puts the server's shared libraries beside the package.
        return self.root.parent.parent / "nvidia_pytriton.libs"

    def stub(self) -> Path:
        """The python backend stub built for this interpreter's Python version."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / STUB


def prepare_backends(distribution: TritonDistribution, workdir: Path) -> Path:
    """Assembles a backend directory: the python backend with the stub for this Python beside it.

    The wheel keeps one stub per Python version apart from the backend; the backend looks for
    `triton_python_backend_stub` in its own folder, and it must be executable.
    """
    backends = workdir / "backends"
    python_backend = backends / "python"
    if python_backend.exists():
        shutil.rmtree(python_backend)
    shutil.copytree(
        distribution.root / "backends" / "python",
        python_backend,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    stub = python_backend / STUB
    shutil.copyfile(distribution.stub(), stub)
    stub.chmod(0o755)
    return backends


def server_environment(distribution: TritonDistribution) -> dict[str, str]:
    """The environment tritonserver and its python stubs need.

    The wheel's shared libraries go on LD_LIBRARY_PATH, and so does the folder of this
    interpreter's libpython, so that the stub embeds the same Python as the virtualenv whose
    packages (numpy, onnxruntime) it imports.
    """
    paths = [str(distribution.libs)]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir, sysconfig.get_config_var("INSTSONAME") or "").is_file():
        paths.append(libdir)
    inherited = os.environ.get("LD_LIBRARY_PATH")
    return {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join([*paths, *([inherited] if inherited else [])]),
    }


@dataclass(frozen=True)
class Ports:
    grpc: int = 8001
    http: int = 8000
    metrics: int = 8002


# Beside the per-run workdir, so that wiping a workdir does not cost a re-install.
DEFAULT_PYTHON_ENV = Path("build/triton-python-env")
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class LocalTriton:
    """A prepared local Triton: the CPU model repository, the backend folder and the environment."""

    distribution: TritonDistribution
    model_repository: Path
    backends: Path
    env: dict[str, str]

    def command(self, ports: Ports, address: str, shm_prefix: str) -> list[str]:
        """The tritonserver command line.

        Args:
            ports: Where it listens.
            address: The address it binds.
            shm_prefix: Prefix of the python backend's shared-memory regions in /dev/shm; unique
                per start, so that several servers (tests, `make triton`) and a server restarted
                after a crash never meet each other's regions.
        """
        return [
            str(self.distribution.server),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backends}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--grpc-address={address}",
            f"--grpc-port={ports.grpc}",
            f"--http-address={address}",
            f"--http-port={ports.http}",
            f"--metrics-address={address}",
            f"--metrics-port={ports.metrics}",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
        ]


def new_shm_prefix() -> str:
    return f"transferd-{os.getpid()}-{secrets.token_hex(4)}-"


def remove_shm_regions(prefix: str) -> None:
    """Deletes the shared-memory regions a killed server left behind (a drained one removes its own)."""
    for region in SHM_DIR.glob(f"{prefix}*"):
        region.unlink(missing_ok=True)


def prepare(
    model_repo: Path,
    workdir: Path,
    intra_op_threads: int = 0,
    python_env: Path = DEFAULT_PYTHON_ENV,
) -> LocalTriton:
    """Writes the CPU model repository and the backend folder under `workdir`.

    Args:
        model_repo: The exported model repository (GPU configs, model.onnx files).
        workdir: Where the CPU repository and the backend folder are written.
        intra_op_threads: ONNX Runtime threads per CPU model instance (0: its default).
        python_env: The virtualenv the python backend runs the models in (created if missing).

    Raises:
        TritonNotInstalled: the nvidia-pytriton wheel is missing.
        ModelRepositoryError: `model_repo` holds no exported backbone.
    """
    distribution = TritonDistribution.find()
    options = CpuModelOptions(
        python_env=ensure_python_env(python_env), intra_op_threads=intra_op_threads
    )
    cpu_repo = workdir / "model_repo"
    names = write_cpu_repository(model_repo, cpu_repo, options)
    log.info("CPU model repository %s: %s", cpu_repo, ", ".join(names))
    backends = prepare_backends(distribution, workdir)
    return LocalTriton(
        distribution, cpu_repo.resolve(), backends.resolve(), server_environment(distribution)
    )


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        sys.exit(f"{variable}={value!r} is not a port")
    return int(value)


def main(argv: list[str] | None = None) -> None:
    """`make triton`: generates the CPU repository and replaces this process with tritonserver."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--workdir", type=Path, default=Path("build/triton"))
    parser.add_argument(
        "--address",
        # Loopback unless asked: a development server has no authentication of its own.
        default=os.environ.get("TRITON_ADDRESS", "127.0.0.1"),
        help="bind address (TRITON_ADDRESS, default 127.0.0.1)",
    )
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--python-env", type=Path, default=DEFAULT_PYTHON_ENV)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ports = Ports(
        grpc=_port("TRITON_GRPC_PORT", 8001),
        http=_port("TRITON_HTTP_PORT", 8000),
        metrics=_port("TRITON_METRICS_PORT", 8002),
    )
    try:
        local = prepare(args.model_repo, args.workdir, args.intra_op_threads, args.python_env)
    except (TritonNotInstalled, RuntimeError) as error:
        sys.exit(f"triton: {error}")
    log.info("grpc :%d, http :%d, metrics :%d", ports.grpc, ports.http, ports.metrics)
    sys.stdout.flush()
    # exec, not a child: Ctrl-C and SIGTERM go straight to tritonserver, which drains and exits.
    command = local.command(ports, args.address, new_shm_prefix())
    os.execve(command[0], command, local.env)


if __name__ == "__main__":
    main()
