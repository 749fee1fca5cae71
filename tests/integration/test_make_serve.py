"""`make serve` as replicas are started by hand or by a harness: several at once on one
PostgreSQL database (set-up and export take turns), and a `make serve` killed with SIGKILL takes
its server with it (no orphan left holding the ports)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devtools.client import authed_channel
from devtools.launcher import free_port, health_status
from tests.conftest import ROOT
from tests.integration.conftest import text_request
from tests.support.postgres import new_database, postgres_url
from transferd.v1 import embedding_pb2_grpc, tenants_pb2, tenants_pb2_grpc

pytestmark = pytest.mark.slow

ADMIN_KEY = "make-serve-admin-key-0123456789"


class MakeServe:
    """One `make serve` replica on its own ports and data directory."""

    def __init__(self, tmp: Path, model_repo: Path, database_url: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tmp / f"make-serve-{self.port}.log"
        env = {
            **os.environ,
            "TRANSFERD_MODEL_REPO": str(model_repo),
            "TRANSFERD_DATABASE_URL": database_url,
            "TRANSFERD_DATA_DIR": str(tmp / f"data-{self.port}"),
            "TRANSFERD_GRPC_HOST": "127.0.0.1",
            "TRANSFERD_GRPC_PORT": str(self.port),
            "TRANSFERD_METRICS_PORT": str(free_port()),
            "TRANSFERD_ADMIN_KEY": ADMIN_KEY,
        }
        with self.log.open("ab") as out:
            self.make = subprocess.Popen(
                ["make", "--no-print-directory", "serve"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self, status: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while health_status(self.address) != status:
            assert time.monotonic() < deadline, f"{self.address} not {status}; see {self.log}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.make.poll() is None:
            self.make.terminate()  # make forwards SIGTERM to the server
            self.make.wait(60)


@contextmanager
def _replicas(tmp: Path, model_repo: Path, url: str, count: int) -> Iterator[list[MakeServe]]:
    with ExitStack() as stack:
        replicas = [MakeServe(tmp, model_repo, url) for _ in range(count)]
        for replica in replicas:
            stack.callback(replica.stop)
        for replica in replicas:
            replica.wait(health_pb2.HealthCheckResponse.SERVING, 300)
        yield replicas


def test_two_make_serve_at_once_share_one_database_and_die_with_make(
    tmp_path: Path, model_repo: Path
) -> None:
    with new_database("transferd_make_serve") as name:
        with _replicas(tmp_path, model_repo, postgres_url(name), 2) as (a, b):
            with grpc.insecure_channel(a.address) as channel:
                tenants = tenants_pb2_grpc.TenantServiceStub(channel)
                admin = (("authorization", f"Bearer {ADMIN_KEY}"),)
                tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="acme"), metadata=admin)
                key = tenants.CreateApiKey(
                    tenants_pb2.CreateApiKeyRequest(tenant="acme"), metadata=admin
                )
            with authed_channel(b.address, key.secret) as channel:  # made on A, used on B
                embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
                assert len(embed.Embed(text_request(["hello"])).embeddings) == 1

            os.kill(a.make.pid, signal.SIGKILL)
            a.make.wait(10)
            deadline = time.monotonic() + 10
            while health_status(a.address) is not None:  # the server is gone, its port free
                assert time.monotonic() < deadline, "the server outlived its make"
                time.sleep(0.2)
            b.wait(health_pb2.HealthCheckResponse.SERVING, 5)
