"""Starts `transferd serve` as a child process and waits until it is SERVING.

Used by the integration tests, the benchmarks and the examples: they all talk to the real server
over real gRPC on loopback, the way a client does.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.client import bearer
from transferd.v1 import tenants_pb2, tenants_pb2_grpc


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def channel(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel to a test server: plaintext, or TLS with `credentials`."""
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)


def health_status(
    address: str,
    service: str = "",
    timeout: float = 1.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> int | None:
    """The server's health status for `service`, or None when it does not answer."""
    with channel(address, credentials) as health_channel:
        try:
            reply = health_pb2_grpc.HealthStub(health_channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


class ServerProcess:
    """`transferd serve` in a child process on free loopback ports.

    Args:
        env: Extra `TRANSFERD_*` settings for the child.
        log_file: Where the child's output goes (kept for post-mortems).
        ready_timeout: Seconds to wait for SERVING.
        source: The source tree whose `service` package runs (None: this checkout's); an
            earlier release's, to test upgrades.
        credentials: How the launcher's own calls (health, tenants) reach a TLS server.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_file: Path,
        ready_timeout: float = 120.0,
        source: Path | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.credentials = credentials
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.grpc_port}"
        self.admin_key = env.get("TRANSFERD_ADMIN_KEY") or secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "TRANSFERD_GRPC_HOST": "127.0.0.1",
            "TRANSFERD_GRPC_PORT": str(self.grpc_port),
            "TRANSFERD_METRICS_PORT": str(self.metrics_port),
            **env,
            "TRANSFERD_ADMIN_KEY": self.admin_key,
        }
        self._log_file = log_file
        self._ready_timeout = ready_timeout
        self._source = source
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = self._log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=self.env,
            cwd=self._source,  # `-m` imports from the working directory first
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_serving()
        return self

    def wait_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}; see {self._log_file}"
                )
            status = health_status(self.address, credentials=self.credentials)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise TimeoutError(f"server not SERVING after {self._ready_timeout}s; see {self._log_file}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful drain), then SIGKILL if it hangs; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def create_tenant_key(self, tenant: str) -> str:
        """Creates `tenant` (if new) with the admin key and returns a new API key secret for it."""
        with channel(self.address, self.credentials) as admin_channel:
            stub = tenants_pb2_grpc.TenantServiceStub(admin_channel)
            admin = bearer(self.admin_key)
            try:
                stub.CreateTenant(tenants_pb2.CreateTenantRequest(tenant=tenant), metadata=admin)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            reply = stub.CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant=tenant), metadata=admin
            )
        return reply.secret

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
