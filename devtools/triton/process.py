"""A local CPU tritonserver as a child process, for the Triton tests and the benchmark.

Started exactly as `make triton` starts it (`devtools.triton.local.prepare`), on loopback, on the ports it
is given, so that a test can kill it and start it again on the same ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from devtools.launcher import free_port
from devtools.triton.local import (
    DEFAULT_PYTHON_ENV,
    Ports,
    new_shm_prefix,
    prepare,
    remove_shm_regions,
)

LOOPBACK = "127.0.0.1"


def free_ports() -> Ports:
    """Three ports free on loopback right now."""
    return Ports(grpc=free_port(), http=free_port(), metrics=free_port())


# Per-model counters of Triton's Prometheus endpoint (cumulative since the server started).
MODEL_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
)


def model_counters(metrics_url: str, model: str) -> dict[str, float]:
    """MODEL_COUNTERS of `model`, summed over its versions, from Triton's metrics endpoint.

    The average batch Triton ran is the difference of nv_inference_count over the difference of
    nv_inference_exec_count between two readings.
    """
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    found = dict.fromkeys(MODEL_COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in found and f'model="{model}"' in rest:
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


def http_ready(port: int, address: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """Whether Triton answers 200 on /v2/health/ready (server live and every model loaded)."""
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/v2/health/ready", timeout=timeout
        ) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class TritonProcess:
    """A local CPU tritonserver in a child process, on loopback.

    Args:
        model_repo: The exported model repository (its GPU configs become CPU ones).
        workdir: Where the CPU repository, the backend folder and the log go.
        ports: Ports to listen on (default: free ones); `start` after `kill` reuses them.
        intra_op_threads: ONNX Runtime threads per CPU model instance (0: its default).
        python_env: The virtualenv of the python backend (created if missing).
        ready_timeout: Seconds to wait for /v2/health/ready.
    """

    def __init__(
        self,
        model_repo: Path,
        workdir: Path,
        ports: Ports | None = None,
        intra_op_threads: int = 0,
        python_env: Path = DEFAULT_PYTHON_ENV,
        ready_timeout: float = 120.0,
    ) -> None:
        self.ports = ports or free_ports()
        self.grpc_url = f"{LOOPBACK}:{self.ports.grpc}"
        self.metrics_url = f"http://{LOOPBACK}:{self.ports.metrics}/metrics"
        self.log_file = workdir / "tritonserver.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._local = prepare(model_repo, workdir, intra_op_threads, python_env)
        self._shm_prefix = new_shm_prefix()
        self._ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TritonProcess:
        """Starts tritonserver and waits until it and every model are ready.

        It gets a process group of its own, which its python backend stubs join: a crash is
        simulated by killing the whole group, as a container runtime would.
        """
        self._shm_prefix = new_shm_prefix()
        command = self._local.command(self.ports, LOOPBACK, self._shm_prefix)
        with self.log_file.open("ab") as log_handle:
            self.process = subprocess.Popen(
                command,
                env=self._local.env,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.kill()  # never leave a half-started server (and its stubs) behind
            raise
        return self

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with {self.process.returncode}; see {self.log_file}"
                )
            if http_ready(self.ports.http):
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"tritonserver not ready after {self._ready_timeout}s; see {self.log_file}"
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Triton finishes in-flight requests and stops its stubs), else SIGKILL."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_group()  # stubs a failed drain may have left
        remove_shm_regions(self._shm_prefix)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to the server and its python stubs: a crash, with no chance to drain.

        Killing the server alone would orphan the stubs: they outlive their parent.
        """
        assert self.process is not None
        self._kill_group()
        self.process.wait()
        remove_shm_regions(self._shm_prefix)

    def _kill_group(self) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already

    def __enter__(self) -> TritonProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
